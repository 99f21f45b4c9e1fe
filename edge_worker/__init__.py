"""The edge worker: serves loaded models over an OpenAI-compatible API."""
