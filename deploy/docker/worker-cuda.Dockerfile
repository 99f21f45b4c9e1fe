# syntax=docker/dockerfile:1.7
# An InferCDN vLLM worker for NVIDIA GPU hosts. Build from the repository root:
#   docker build -f deploy/docker/worker-cuda.Dockerfile -t infercdn/worker-cuda .
# Run with a GPU (docker run --gpus all …, or nvidia.com/gpu on Kubernetes) and a model
# directory mounted at /models, e.g. INFERCDN_WORKER_MODELS=/models/Qwen2.5-7B-Instruct-AWQ.
ARG BASE_IMAGE=vllm/vllm-openai:v0.11.0

FROM ${BASE_IMAGE} AS build
WORKDIR /src
COPY deploy/docker/requirements-gateway.txt deploy/docker/requirements-worker-cuda.txt ./
RUN pip wheel --no-cache-dir --wheel-dir /wheels/deps -r requirements-worker-cuda.txt
COPY pyproject.toml README.md ./
COPY gateway/ gateway/
COPY routing/ routing/
COPY edge_worker/ edge_worker/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels/app .

FROM ${BASE_IMAGE}
# vLLM's own Python (not a venv: vLLM is installed there). The image's dependencies are exactly
# its pinned requirements file: no llama.cpp, which the package itself would ask for.
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/deps/*.whl \
 && pip install --no-cache-dir --no-index --no-deps /wheels/app/*.whl \
 && rm -rf /wheels \
 && useradd --create-home --uid 10001 infercdn \
 && mkdir /models /var/lib/infercdn && chown infercdn /models /var/lib/infercdn
USER 10001
# /var/lib/infercdn: its key (its identity in the fleet) and its receipts; keep them.
VOLUME ["/models", "/var/lib/infercdn"]
ENV XDG_STATE_HOME=/var/lib \
    INFERCDN_WORKER_HOST=0.0.0.0 \
    INFERCDN_WORKER_PORT=8081 \
    INFERCDN_WORKER_RUNTIME=vllm \
    HF_HOME=/models/.cache \
    PYTHONUNBUFFERED=1
EXPOSE 8081
# vLLM takes minutes to load a model: the worker answers 503 until it is ready.
HEALTHCHECK --interval=15s --timeout=3s --start-period=600s --retries=3 \
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8081/health', timeout=2)"]
ENTRYPOINT ["infercdn"]
CMD ["worker"]
