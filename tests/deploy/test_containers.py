"""deploy/docker, deploy/compose.yaml and deploy/k8s, checked statically: no container engine
or cluster runs on these machines. Linters and schema validators from PyPI, then cross-checks that
every command, flag, setting, port, path and dependency they name exists in the project."""

from __future__ import annotations

import ast
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from edge_worker.cli import build_parser as worker_parser
from edge_worker.config import WorkerConfig
from gateway.cli import build_parser as gateway_parser
from gateway.config import GatewayConfig
from tests.deploy.monitoring import DEPLOY

ROOT = DEPLOY.parent
DOCKERFILES = sorted((DEPLOY / "docker").glob("*.Dockerfile"))
K8S = sorted((DEPLOY / "k8s").glob("*.yaml"))
BIN = Path(sys.executable).parent
ROUTES = {"/health", "/metrics"}  # what probes and healthchecks may hit, on both processes


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_lint_clean(dockerfile: Path) -> None:
    result = run(str(BIN / "hadolint"), "--config", str(DEPLOY / "docker" / ".hadolint.yaml"), str(dockerfile))
    assert result.returncode == 0, result.stdout + result.stderr


def test_yaml_lints_clean() -> None:
    result = run(str(BIN / "yamllint"), "-c", str(DEPLOY / ".yamllint.yaml"), str(DEPLOY))
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_matches_the_compose_spec() -> None:
    result = run(str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(DEPLOY / "compose.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_k8s_manifests_match_their_schemas() -> None:
    result = run(str(BIN / "kubernetes-validate"), "--strict", *map(str, K8S))
    assert result.returncode == 0, result.stdout + result.stderr


# ---- cross-checks -----------------------------------------------------------------------------


def deploy_texts() -> Iterator[tuple[Path, str]]:
    for path in [*DOCKERFILES, DEPLOY / "compose.yaml", DEPLOY / ".env.example", *K8S]:
        yield path, path.read_text()


def test_every_setting_named_in_deploy_exists() -> None:
    fields = {
        "GATEWAY": set(GatewayConfig.__dataclass_fields__),
        "WORKER": set(WorkerConfig.__dataclass_fields__),
    }
    seen = 0
    for path, text in deploy_texts():
        for section, key in re.findall(r"INFERCDN_(GATEWAY|WORKER)_([A-Z0-9_]+)", text):
            seen += 1
            assert key.lower() in fields[section], f"{path.name}: INFERCDN_{section}_{key} is no setting"
    assert seen > 20


def test_compose_variables_are_all_in_the_env_example() -> None:
    defined = set(re.findall(r"^([A-Z_]+)=", (DEPLOY / ".env.example").read_text(), re.M))
    used = set(re.findall(r"\$\{([A-Z_]+)", (DEPLOY / "compose.yaml").read_text()))
    assert used and used <= defined


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def parse_cli(argv: list[str]) -> None:
    """Parse an infercdn command line the way the program will (SystemExit if it would refuse it)."""
    command, *rest = argv
    if command == "worker":
        worker_parser().parse_args(rest)
    else:
        gateway_parser().parse_args(argv)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_copy_real_paths_run_real_commands_and_expose_the_real_port(dockerfile: Path) -> None:
    instructions = dockerfile_instructions(dockerfile)
    worker = "worker" in dockerfile.name
    port = WorkerConfig().port if worker else GatewayConfig().port
    for word, rest in instructions:
        if word == "COPY" and not rest.startswith("--from"):
            for source in shlex.split(rest)[:-1]:
                assert (ROOT / source).exists(), f"{dockerfile.name} copies {source}, which does not exist"
        if word == "EXPOSE":
            assert rest == str(port)
        if word == "HEALTHCHECK":
            (url,) = re.findall(r"http://127\.0\.0\.1:(\d+)(/\w+)", rest)
            assert url == (str(port), "/health")
        if word == "FROM" or (word == "ARG" and "IMAGE=" in rest):
            assert ":latest" not in rest
        if "requirements" in rest:
            for req in re.findall(r"deploy/docker/(requirements-[\w-]+\.txt)", rest):
                assert (DEPLOY / "docker" / req).exists()
    entrypoint = [ast.literal_eval(r) for w, r in instructions if w == "ENTRYPOINT"]
    cmd = [ast.literal_eval(r) for w, r in instructions if w == "CMD"]
    assert entrypoint == [["infercdn"]]
    assert cmd[-1] == (["worker"] if worker else ["gateway"])
    parse_cli(cmd[-1])


def k8s_docs() -> Iterator[dict[str, object]]:
    for path in K8S:
        yield from (d for d in yaml.safe_load_all(path.read_text()) if d)


def test_k8s_containers_run_real_commands_on_real_ports_and_probe_real_routes() -> None:
    checked = 0
    for doc in k8s_docs():
        if doc["kind"] not in ("Deployment", "DaemonSet"):
            continue
        pod = doc["spec"]["template"]  # type: ignore[index]
        for container in pod["spec"]["containers"]:
            checked += 1
            args = container["args"]
            parse_cli(args)
            port = WorkerConfig().port if args[0] == "worker" else GatewayConfig().port
            assert [p["containerPort"] for p in container["ports"]] == [port]
            assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)
            assert pod["metadata"]["annotations"]["prometheus.io/path"] in ROUTES
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                if probe in container:
                    assert container[probe]["httpGet"]["path"] in ROUTES
            assert ":latest" not in container["image"] and ":" in container["image"]
            refs = {next(iter(r.values()))["name"] for r in container["envFrom"]}
            assert refs == {"infercdn-config", "infercdn-secrets"}
    assert checked == 3
    names = {(d["kind"], d["metadata"]["name"]) for d in k8s_docs()}  # type: ignore[index]
    assert {("ConfigMap", "infercdn-config"), ("Secret", "infercdn-secrets"), ("Service", "infercdn-gateway")} <= names
    assert ("HorizontalPodAutoscaler", "infercdn-gateway") in names


def test_gpu_workers_ask_for_a_gpu() -> None:
    (cuda,) = [d for d in k8s_docs() if d["metadata"]["name"] == "infercdn-worker-cuda"]  # type: ignore[index]
    (container,) = cuda["spec"]["template"]["spec"]["containers"]  # type: ignore[index]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "vllm" in container["args"]


def test_compose_wires_real_files_ports_and_images() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"gateway", "worker-1", "worker-2", "prometheus", "grafana"} <= set(services)
    for name, service in services.items():
        if "build" in service:
            assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).is_file(), name
        assert ":latest" not in service["image"] and ":" in service["image"], name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), f"{name} mounts {source}, which does not exist"
    port = GatewayConfig().port
    assert services["gateway"]["ports"] == [f"${{INFERCDN_PORT:-{port}}}:{port}"]
    # Images that cannot be pulled everywhere are optional: the fleet runs without them.
    assert {n for n, s in services.items() if s.get("profiles")} == {"prometheus", "grafana"}
    # Prometheus finds the services by the names compose gives them.
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus-compose.yml").read_text())
    targets = {t for job in prometheus["scrape_configs"] for s in job["static_configs"] for t in s["targets"]}
    assert targets == {f"gateway:{port}"} | {f"{w}:{WorkerConfig().port}" for w in ("worker-1", "worker-2")}
    for worker in ("worker-1", "worker-2"):
        env = services[worker]["environment"]
        assert env["INFERCDN_WORKER_ADVERTISE_URL"] == f"http://{worker}:{WorkerConfig().port}"
        assert env["INFERCDN_WORKER_GATEWAYS"] == f"http://gateway:{port}"
        assert env["INFERCDN_WORKER_JOIN_TOKEN"] == services["gateway"]["environment"]["INFERCDN_GATEWAY_JOIN_TOKEN"]


# Third-party imports of each image's packages → the distributions its requirements must pin.
DISTRIBUTIONS = {
    "aiohttp": "aiohttp",
    "uvloop": "uvloop",
    "prometheus_client": "prometheus-client",
    "msgpack": "msgpack",
    "cryptography": "cryptography",
    "orjson": "orjson",
    "asyncpg": "asyncpg",
    "consul": "py-consul",
    "llama_cpp": "llama-cpp-python",
    "jinja2": "Jinja2",
    "numpy": "numpy",
    "multidict": "aiohttp",  # aiohttp's own dependency
    "yarl": "aiohttp",
}


def third_party_imports(package: str) -> set[str]:
    names: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("gateway", "routing", "edge_worker")}


def pinned(requirements: str) -> set[str]:
    pins: set[str] = set()
    for line in (DEPLOY / "docker" / requirements).read_text().splitlines():
        line = line.strip()
        if line.startswith("-r "):
            pins |= pinned(line[3:])
        elif line and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version, f"{requirements}: {line} is not pinned"
            pins.add(name)
    return pins


@pytest.mark.parametrize(
    ("requirements", "packages"),
    [
        ("requirements-gateway.txt", ("gateway", "routing")),
        ("requirements-worker-cpu.txt", ("edge_worker", "routing")),
        ("requirements-worker-cuda.txt", ("edge_worker", "routing")),
    ],
)
def test_each_image_pins_what_its_code_imports(requirements: str, packages: tuple[str, ...]) -> None:
    needed = {DISTRIBUTIONS[name] for p in packages for name in third_party_imports(p)}
    if "cuda" in requirements:
        needed -= {"llama-cpp-python", "Jinja2", "numpy"}  # llama.cpp is imported only by llama.cpp workers
    assert needed - pinned(requirements) == set()
