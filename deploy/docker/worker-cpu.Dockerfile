# syntax=docker/dockerfile:1.7
# An InferCDN llama.cpp worker for CPU hosts (any x86-64 with AVX2). Build from the repository root:
#   docker build -f deploy/docker/worker-cpu.Dockerfile -t infercdn/worker-cpu .
# Serves the bundled SmolLM2-135M-Instruct unless INFERCDN_WORKER_MODELS names GGUF files
# (mount them at /models). Configure with INFERCDN_WORKER_* environment variables.
# BASE_IMAGE may be any Debian bookworm with python3 and python3-venv (see gateway.Dockerfile).
ARG BASE_IMAGE=python:3.11.7-slim-bookworm

FROM ${BASE_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# A venv, not the system site-packages: Debian's own python3 refuses system-wide pip installs (PEP 668).
RUN python3 -m venv /opt/infercdn
COPY deploy/docker/requirements-gateway.txt deploy/docker/requirements-worker-cpu.txt ./
# Portable build: the native one crashed on AVX-512/AMX CPUs (see DESIGN.md). The pip cache keeps
# the llama.cpp wheel (minutes of compiling) across builds whose requirements changed.
ENV CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/infercdn/bin/pip install -r requirements-worker-cpu.txt
COPY pyproject.toml README.md ./
COPY gateway/ gateway/
COPY routing/ routing/
COPY edge_worker/ edge_worker/
# The image's dependencies are exactly its pinned requirements file: the gateway's has no llama.cpp.
RUN /opt/infercdn/bin/pip install --no-cache-dir --no-deps .

FROM ${BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 infercdn \
 && mkdir /models /var/lib/infercdn && chown infercdn /models /var/lib/infercdn
# The venv as built: same base, same paths. (COPY, not a bind mount: buildah's layer cache
# would not see a change in the mounted stage.)
COPY --from=build /opt/infercdn /opt/infercdn
USER 10001
# /var/lib/infercdn: its key (its identity in the fleet) and its receipts; keep them.
VOLUME ["/models", "/var/lib/infercdn"]
ENV PATH=/opt/infercdn/bin:$PATH \
    XDG_STATE_HOME=/var/lib \
    INFERCDN_WORKER_HOST=0.0.0.0 \
    INFERCDN_WORKER_PORT=8081 \
    PYTHONUNBUFFERED=1
EXPOSE 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8081/health', timeout=2)"]
ENTRYPOINT ["infercdn"]
CMD ["worker"]
