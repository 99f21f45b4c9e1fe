"""Runtimes: the engines that generate tokens, one package each.

``llama_cpp``: GGUF models in this process, for consumer devices and CPUs.
``vllm``: a supervised (or attached) vLLM server, for datacenter GPUs.
Each exposes ``install(app, config, metrics)``; ``base`` is what they share.
"""
