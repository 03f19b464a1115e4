"""Where a registry's hosts configuration is: the hosts directories to search (``--hosts-dir``,
the CRI ``config_path``, ``/etc/containerd/certs.d``, ``/etc/docker/certs.d``), the directory
for a host in them (``HOST_PORT_``, ``HOST[:PORT]``, ``_default``), and what that directory
holds: a ``hosts.toml``, or docker-style certificate files."""

from __future__ import annotations

import os
from collections.abc import Sequence

from pyctl.errors import ConfigError
from pyctl.registry.hosts.hosts_toml import parse_hosts_toml
from pyctl.registry.hosts.model import (
    DEFAULT_DIR,
    DEFAULT_HOSTS_DIRS,
    HOSTS_FILE,
    CriRegistryConfig,
    RegistryHost,
    canonical_ref_host,
)


def hosts_dirs(explicit: Sequence[str], cri: CriRegistryConfig) -> list[str]:
    """The hosts directories to search, in order (SPEC "Registry configuration").

    Explicit ``--hosts-dir`` / ``hosts_dir`` directories replace the defaults; otherwise the CRI
    ``config_path`` (``:``-separated like containerd's ``filepath.SplitList``), then
    ``/etc/containerd/certs.d``, then ``/etc/docker/certs.d`` (duplicates dropped).
    """
    if explicit:
        return list(explicit)
    out: list[str] = []
    for d in [*cri.config_paths, *DEFAULT_HOSTS_DIRS]:
        if d not in out:
            out.append(d)
    return out


def host_dir_candidates(root: str, host: str) -> list[str]:
    """containerd ``hostPaths`` (unix): ``HOST_PORT_``, ``HOST[:PORT]``, ``_default``."""
    out: list[str] = []
    idx = host.rfind(":")
    if idx > 0:
        out.append(os.path.join(root, f"{host[:idx]}_{host[idx + 1 :]}_"))
    out.append(os.path.join(root, host))
    out.append(os.path.join(root, DEFAULT_DIR))
    return out


def find_host_dir(root: str, host: str) -> str | None:
    """The first existing candidate for ``host`` under ``root`` (A1), or None.

    Existence is ``stat`` succeeding (an empty directory is "found"). A ``stat`` failure other
    than "no such file" is a :class:`ConfigError`.
    """
    if not host or "/" in host or "\0" in host or host in (".", "..", DEFAULT_DIR):
        raise ConfigError(f"invalid registry host {host!r}")
    for candidate in host_dir_candidates(root, host):
        try:
            os.stat(candidate)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise ConfigError(
                f"cannot look up registry host directory {candidate}: {exc.strerror or exc}"
            ) from exc
        return candidate
    return None


def lookup_host_dir(ref_host: str, dirs: Sequence[str]) -> str | None:
    """Search ``dirs`` in order for ``ref_host``'s directory (nerdctl style).

    ``index.docker.io`` is looked up as ``docker.io``; for ``HOST:443`` the bare ``HOST`` is
    tried next in the same root when nothing (not even ``_default``) matched.
    """
    host = canonical_ref_host(ref_host)
    for root in dirs:
        found = find_host_dir(root, host)
        if found is None and host.endswith(":443"):
            found = find_host_dir(root, host[: -len(":443")])
        if found is not None:
            return found
    return None


def load_host_dir(directory: str) -> list[RegistryHost]:
    """Raw entries of one host directory: ``hosts.toml`` if non-empty, else the cert files."""
    hosts_file = os.path.join(directory, HOSTS_FILE)
    try:
        with open(hosts_file, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raw = b""
    except OSError as exc:
        raise ConfigError(f"cannot read {hosts_file}: {exc.strerror or exc}") from exc
    if raw:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{hosts_file}: not UTF-8 text: {exc}") from exc
        return parse_hosts_toml(text, base_dir=directory, source=hosts_file)
    root = load_cert_dir(directory)
    if root is None:
        root = RegistryHost.unfilled(directory)
    return [root]


def load_cert_dir(directory: str) -> RegistryHost | None:
    """Docker-style certificate files (A6) as one root entry (host ""), or None if there are none.

    ``*.crt`` are CA files; ``*.cert`` are client certificates whose key is the same basename
    with ``.key`` when that exists, else "" (the key is read from the ``.cert`` file). A lone
    ``*.key`` is ignored. Entries are taken in name order, directories skipped.
    """
    try:
        with os.scandir(directory) as it:
            files = sorted(e.name for e in it if not e.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read certificate directory {directory}: {exc}") from exc
    ca: list[str] = []
    client: list[tuple[str, str]] = []
    for name in files:
        if name.endswith(".crt"):
            ca.append(os.path.join(directory, name))
        if name.endswith(".cert"):
            key = os.path.join(directory, name[: -len(".cert")] + ".key")
            try:
                os.stat(key)
            except FileNotFoundError:
                key = ""
            except OSError as exc:
                raise ConfigError(f"cannot read {key}: {exc.strerror or exc}") from exc
            client.append((os.path.join(directory, name), key))
    if not ca and not client:
        return None
    return RegistryHost.unfilled(directory)._replace(ca=tuple(ca), client=tuple(client))
