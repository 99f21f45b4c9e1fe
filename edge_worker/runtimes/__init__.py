"""Runtimes: the engines that generate tokens (llama.cpp here; vLLM later)."""
