"""Global settings: command-line flag > environment > pyctl.toml > default.

`resolve_settings` is the only entry point; the CLI hands it the flags the user gave
(``None`` for absent ones) and gets back a frozen :class:`Settings`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from pyctl.errors import ConfigError, InvalidArgumentError

DEFAULT_ADDRESS = "/run/containerd/containerd.sock"
DEFAULT_NAMESPACE = "default"
DEFAULT_SNAPSHOTTER = "overlayfs"
DEFAULT_CONTAINERD_CONFIG = "/etc/containerd/config.toml"
SYSTEM_CONFIG = "/etc/pyctl/pyctl.toml"

_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$")
_NAMESPACE_MAX = 76


def user_config_path() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "pyctl", "pyctl.toml")


class Settings(NamedTuple):
    address: str = DEFAULT_ADDRESS
    namespace: str = DEFAULT_NAMESPACE
    snapshotter: str = DEFAULT_SNAPSHOTTER
    hosts_dir: tuple[str, ...] = ()
    containerd_config: str = DEFAULT_CONTAINERD_CONFIG
    insecure_registry: bool = False
    debug: bool = False
    config_file: str | None = None
    # Where each value came from ("flag", "env", "config", "default"); for `info` and tests.
    sources: Mapping[str, str] = {}


# key -> (python type, environment variable or None)
_KEYS: dict[str, tuple[type, str | None]] = {
    "address": (str, "CONTAINERD_ADDRESS"),
    "namespace": (str, "CONTAINERD_NAMESPACE"),
    "snapshotter": (str, "CONTAINERD_SNAPSHOTTER"),
    "hosts_dir": (list, None),
    "containerd_config": (str, None),
    "insecure_registry": (bool, None),
    "debug": (bool, None),
}


def validate_namespace(name: str) -> str:
    if not name or len(name) > _NAMESPACE_MAX or not _NAMESPACE_RE.match(name):
        raise InvalidArgumentError(
            f'invalid namespace "{name}": use letters, digits and single ".", "_" or "-" '
            f"between them, at most {_NAMESPACE_MAX} characters (e.g. default, k8s.io)"
        )
    return name


def normalize_address(address: str) -> str:
    if address.startswith("unix://"):
        address = address[len("unix://") :]
    if "://" in address or not address:
        raise InvalidArgumentError(
            f'invalid containerd address "{address}": give a unix socket path, '
            "e.g. /run/containerd/containerd.sock or unix:///run/containerd/containerd.sock"
        )
    return address


def _config_file(explicit: str | None, env: Mapping[str, str]) -> str | None:
    """The config file to read: --config, else $PYCTL_CONFIG (both must exist), else the
    first of the system and user files that exists."""
    if explicit:
        return explicit
    if env.get("PYCTL_CONFIG"):
        return env["PYCTL_CONFIG"]
    for candidate in (SYSTEM_CONFIG, user_config_path()):
        if os.path.isfile(candidate):
            return candidate
    return None


def load_config_file(path: str) -> dict[str, Any]:
    import tomllib

    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} does not exist (check --config or PYCTL_CONFIG)"
        ) from None
    except PermissionError:
        raise ConfigError(f"config file {path}: permission denied") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory, not a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: invalid TOML: {exc}") from None
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in _KEYS:
            known = ", ".join(_KEYS)
            raise ConfigError(f'config file {path}: unknown key "{key}" (known keys: {known})')
        typ = _KEYS[key][0]
        if typ is list:
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(
                    f'config file {path}: key "{key}" must be a string or a list of strings'
                )
        elif not isinstance(value, typ):
            raise ConfigError(f'config file {path}: key "{key}" must be a {typ.__name__}')
        out[key] = value
    return out


def _env_bool(name: str, raw: str) -> bool:
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise InvalidArgumentError(
        f"environment variable {name}={raw!r} is not a boolean (use true or false)"
    )


def resolve_settings(
    flags: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    config_path: str | None = None,
) -> Settings:
    """Merge flags (None = not given) over environment over config file over defaults."""
    env = os.environ if env is None else env
    path = _config_file(config_path, env)
    file_values = load_config_file(path) if path is not None else {}

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key, (typ, env_name) in _KEYS.items():
        flag = flags.get(key)
        if flag is not None and flag != () and flag is not False:
            values[key], sources[key] = flag, "flag"
        elif env_name and env.get(env_name):
            raw = env[env_name]
            values[key] = _env_bool(env_name, raw) if typ is bool else raw
            sources[key] = "env"
        elif key in file_values:
            values[key], sources[key] = file_values[key], "config"
        else:
            sources[key] = "default"

    if "address" in values:
        values["address"] = normalize_address(values["address"])
    if "namespace" in values:
        validate_namespace(values["namespace"])
    if "hosts_dir" in values:
        values["hosts_dir"] = tuple(values["hosts_dir"])
    return Settings(
        **values,
        config_file=path,
        sources=sources,
    )
