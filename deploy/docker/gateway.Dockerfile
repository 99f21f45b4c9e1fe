# syntax=docker/dockerfile:1.7
# The InferCDN gateway. Build from the repository root:
#   docker build -f deploy/docker/gateway.Dockerfile -t infercdn/gateway .
# Configure with INFERCDN_GATEWAY_* environment variables (see README).
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY deploy/docker/requirements-gateway.txt ./
RUN pip wheel --no-cache-dir --wheel-dir /wheels -r requirements-gateway.txt
COPY pyproject.toml README.md ./
COPY gateway/ gateway/
COPY routing/ routing/
COPY edge_worker/ edge_worker/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
RUN useradd --create-home --uid 10001 infercdn
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels /wheels/*.whl && rm -rf /wheels
USER 10001
ENV INFERCDN_GATEWAY_HOST=0.0.0.0 \
    INFERCDN_GATEWAY_PORT=8080 \
    PYTHONUNBUFFERED=1
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=2)"]
ENTRYPOINT ["infercdn"]
CMD ["gateway"]
