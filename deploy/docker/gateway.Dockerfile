# syntax=docker/dockerfile:1.7
# The InferCDN gateway. Build from the repository root:
#   docker build -f deploy/docker/gateway.Dockerfile -t infercdn/gateway .
# Configure with INFERCDN_GATEWAY_* environment variables (see README).
# BASE_IMAGE may be any Debian bookworm with python3 and python3-venv (make test-containers
# builds on one made locally with debootstrap, as no image registry is reachable there).
ARG BASE_IMAGE=python:3.11.7-slim-bookworm

FROM ${BASE_IMAGE} AS build
WORKDIR /src
# A venv, not the system site-packages: Debian's own python3 refuses system-wide pip installs (PEP 668).
RUN python3 -m venv /opt/infercdn
COPY deploy/docker/requirements-gateway.txt ./
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/infercdn/bin/pip install -r requirements-gateway.txt
COPY pyproject.toml README.md ./
COPY gateway/ gateway/
COPY routing/ routing/
COPY edge_worker/ edge_worker/
# The image's dependencies are exactly its pinned requirements file: the gateway's has no llama.cpp.
RUN /opt/infercdn/bin/pip install --no-cache-dir --no-deps .

FROM ${BASE_IMAGE}
RUN useradd --create-home --uid 10001 infercdn \
 && mkdir /var/lib/infercdn && chown infercdn /var/lib/infercdn
# The venv as built: same base, same paths. (COPY, not a bind mount: buildah's layer cache
# would not see a change in the mounted stage.)
COPY --from=build /opt/infercdn /opt/infercdn
USER 10001
# Its key, worker enrollments and usage ledger: keep them across restarts and upgrades.
VOLUME ["/var/lib/infercdn"]
ENV PATH=/opt/infercdn/bin:$PATH \
    XDG_STATE_HOME=/var/lib \
    INFERCDN_GATEWAY_HOST=0.0.0.0 \
    INFERCDN_GATEWAY_PORT=8080 \
    PYTHONUNBUFFERED=1
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=2)"]
ENTRYPOINT ["infercdn"]
CMD ["gateway"]
