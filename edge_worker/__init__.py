"""The edge worker: serves loaded models over an OpenAI-compatible API."""

import edge_worker.native_first  # noqa: F401  (llama.cpp's libraries before numpy's)
