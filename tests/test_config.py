"""Global settings precedence: flag > environment > pyctl.toml > default."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyctl.config import DEFAULT_ADDRESS, resolve_settings
from pyctl.errors import ConfigError, InvalidArgumentError


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "pyctl.toml"
    path.write_text(text)
    return str(path)


def test_defaults_without_any_source(tmp_path: Path) -> None:
    s = resolve_settings({}, env={"HOME": str(tmp_path)}, config_path=None)
    assert s.address == DEFAULT_ADDRESS
    assert s.namespace == "default"
    assert s.snapshotter == "overlayfs"
    assert s.sources["namespace"] == "default"


def test_config_file_over_default(tmp_path: Path) -> None:
    cfg = write(tmp_path, 'namespace = "k8s.io"\naddress = "unix:///x/c.sock"\nhosts_dir = "/h"\n')
    s = resolve_settings({}, env={}, config_path=cfg)
    assert s.namespace == "k8s.io"
    assert s.address == "/x/c.sock"
    assert s.hosts_dir == ("/h",)
    assert s.sources["namespace"] == "config"


def test_env_over_config_file(tmp_path: Path) -> None:
    cfg = write(tmp_path, 'namespace = "k8s.io"\nsnapshotter = "native"\n')
    env = {"CONTAINERD_NAMESPACE": "fromenv", "CONTAINERD_SNAPSHOTTER": "btrfs"}
    s = resolve_settings({}, env=env, config_path=cfg)
    assert (s.namespace, s.snapshotter) == ("fromenv", "btrfs")
    assert s.sources["namespace"] == "env"


def test_flag_over_env(tmp_path: Path) -> None:
    cfg = write(tmp_path, 'namespace = "k8s.io"\n')
    env = {"CONTAINERD_NAMESPACE": "fromenv", "CONTAINERD_ADDRESS": "/env.sock"}
    s = resolve_settings({"namespace": "fromflag"}, env=env, config_path=cfg)
    assert s.namespace == "fromflag"
    assert s.address == "/env.sock"
    assert s.sources["namespace"] == "flag"


def test_pyctl_config_env_names_the_file(tmp_path: Path) -> None:
    cfg = write(tmp_path, "debug = true\n")
    s = resolve_settings({}, env={"PYCTL_CONFIG": cfg})
    assert s.debug is True
    assert s.config_file == cfg


def test_user_config_found_via_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "pyctl"
    d.mkdir()
    (d / "pyctl.toml").write_text('namespace = "user"\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setattr("pyctl.config.SYSTEM_CONFIG", str(tmp_path / "absent.toml"))
    s = resolve_settings({}, env={})
    assert s.namespace == "user"


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    cfg = write(tmp_path, 'namespace = "x"\nnamespaec = "typo"\n')
    with pytest.raises(ConfigError) as err:
        resolve_settings({}, env={}, config_path=cfg)
    assert cfg in str(err.value)
    assert '"namespaec"' in str(err.value)


def test_wrong_type_is_an_error(tmp_path: Path) -> None:
    cfg = write(tmp_path, 'debug = "yes"\n')
    with pytest.raises(ConfigError, match='"debug" must be a bool'):
        resolve_settings({}, env={}, config_path=cfg)


def test_invalid_toml(tmp_path: Path) -> None:
    cfg = write(tmp_path, "namespace = \n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        resolve_settings({}, env={}, config_path=cfg)


def test_missing_explicit_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_settings({}, env={}, config_path=str(tmp_path / "nope.toml"))


@pytest.mark.parametrize("name", ["Bad/ns", "-x", "a..b", "", "x" * 77])
def test_bad_namespace(name: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="invalid namespace"):
        resolve_settings(
            {"namespace": name} if name else {"namespace": "a b"},
            env={},
            config_path=write(tmp_path, ""),
        )


def test_bad_env_bool_is_reported(tmp_path: Path) -> None:
    cfg = write(tmp_path, "insecure_registry = true\n")
    s = resolve_settings({}, env={}, config_path=cfg)
    assert s.insecure_registry is True
