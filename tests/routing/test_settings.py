from dataclasses import dataclass
from pathlib import Path

import pytest

from routing.settings import ConfigError, load_settings, read_toml, require


@dataclass(frozen=True)
class Sample:
    port: int = 1
    ratio: float = 0.5
    name: str = "n"
    on: bool = False
    urls: tuple[str, ...] = ()
    file: Path | None = None

    def check(self) -> None:
        require(self.port < 70000, "sample.port", "too big")


def test_later_sources_win() -> None:
    s = load_settings(
        Sample,
        section="sample",
        toml={"sample": {"port": 2, "ratio": 1, "urls": ["a"]}},
        env={"INFERCDN_SAMPLE_PORT": "3", "INFERCDN_SAMPLE_ON": "yes", "INFERCDN_SAMPLE_URLS": "x, y"},
        flags={"port": 4, "name": None},
    )
    assert s == Sample(port=4, ratio=1.0, name="n", on=True, urls=("x", "y"))


def test_paths_are_read_from_text() -> None:
    s = load_settings(Sample, section="sample", env={"INFERCDN_SAMPLE_FILE": "/tmp/x"})
    assert s.file == Path("/tmp/x")


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"toml": {"sample": {"prot": 1}}}, "sample.prot"),
        ({"toml": {"sample": {"port": "eighty"}}}, "sample.port"),
        ({"toml": {"sample": {"on": 1}}}, "sample.on"),
        ({"toml": {"sample": {"urls": "a"}}}, "sample.urls"),
        ({"env": {"INFERCDN_SAMPLE_RATIO": "fast"}}, "INFERCDN_SAMPLE_RATIO"),
        ({"env": {"INFERCDN_SAMPLE_BOGUS": "1"}}, "INFERCDN_SAMPLE_BOGUS"),
        ({"flags": {"port": 99999}}, "sample.port"),
    ],
)
def test_errors_name_the_bad_key(kwargs: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(Sample, section="sample", **kwargs)  # type: ignore[arg-type]
    assert named in str(caught.value)


def test_toml_errors_are_config_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[gateway\nport = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_toml(bad)
    with pytest.raises(ConfigError, match="not found"):
        read_toml(tmp_path / "missing.toml")
