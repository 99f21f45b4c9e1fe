# syntax=docker/dockerfile:1.7
# An InferCDN llama.cpp worker for CPU hosts (any x86-64 with AVX2). Build from the repository root:
#   docker build -f deploy/docker/worker-cpu.Dockerfile -t infercdn/worker-cpu .
# Serves the bundled SmolLM2-135M-Instruct unless INFERCDN_WORKER_MODELS names GGUF files
# (mount them at /models). Configure with INFERCDN_WORKER_* environment variables.
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY deploy/docker/requirements-gateway.txt deploy/docker/requirements-worker-cpu.txt ./
# Portable build: the native one crashed on AVX-512/AMX CPUs (see DESIGN.md).
ENV CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
RUN pip wheel --no-cache-dir --wheel-dir /wheels -r requirements-worker-cpu.txt
COPY pyproject.toml README.md ./
COPY gateway/ gateway/
COPY routing/ routing/
COPY edge_worker/ edge_worker/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 infercdn \
 && mkdir /models && chown infercdn /models
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels /wheels/*.whl && rm -rf /wheels
USER 10001
VOLUME ["/models"]
ENV INFERCDN_WORKER_HOST=0.0.0.0 \
    INFERCDN_WORKER_PORT=8081 \
    PYTHONUNBUFFERED=1
EXPOSE 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8081/health', timeout=2)"]
ENTRYPOINT ["infercdn"]
CMD ["worker"]
