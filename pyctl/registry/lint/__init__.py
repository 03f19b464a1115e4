"""The offline half of ``pyctl hosts --check``: what is wrong in the registry configuration.

:func:`lint` reads containerd's config (with its imports) and every hosts directory entry that
applies to an image reference (or registry host), and returns :class:`Finding` objects: a
severity, the file (and the line where there is one), what is wrong, and what to do. Nothing
goes over the network and nothing is written.

* :mod:`.containerd`: containerd's config, each file and the merged CRI registry section;
* :mod:`.hostsdirs`: the hosts directory entry that applies (and those that never can), its
  hosts.toml or docker-style certificate files;
* :mod:`.certs`: CA files and client pairs as containerd loads them (``cryptography``);
* :mod:`.tomllines`: where a key is written, for line numbers.

What containerd does with each mistake was read in its source and tried on its binaries
(1.6.20 as Debian 12 ships it, 1.7.34, 2.3.4); every message says which versions do what.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from pyctl.config import Settings
from pyctl.errors import ConfigError
from pyctl.reference import parse_docker_ref
from pyctl.registry.credentials.keys import DOCKER_HUB_KEY, auth_key
from pyctl.registry.hosts.certsd import hosts_dirs
from pyctl.registry.hosts.model import DOCKER_HUB, DOCKER_HUB_REGISTRY, canonical_ref_host
from pyctl.registry.hosts.resolve import resolve_hosts
from pyctl.registry.lint.containerd import ContainerdLint
from pyctl.registry.lint.findings import Finding, Report, Severity
from pyctl.registry.lint.hostsdirs import HostsLint

if TYPE_CHECKING:
    from pyctl.registry.connect import RegistryConfig

__all__ = ["Finding", "Severity", "lint", "registry_of"]


def lint(config: Settings | RegistryConfig, ref_or_host: str) -> list[Finding]:
    """Findings about the registry configuration that applies to ``ref_or_host``: the
    findings of each file together, in line order; containerd's config files first, then the
    hosts directories.

    ``config`` is pyctl's settings (containerd's config is then read here, and a file
    containerd would not start with is a finding) or a loaded ``RegistryConfig``. An image
    reference that does not parse is an :class:`~pyctl.errors.InvalidReferenceError`.
    """
    host = canonical_ref_host(registry_of(ref_or_host))
    settings = config if isinstance(config, Settings) else config.settings
    loaded = None if isinstance(config, Settings) else (config.containerd, config.cri)
    r = Report(settings, host)
    cd = ContainerdLint(r)
    named = settings.sources.get("containerd_config", "default") != "default"
    cd.read(settings.containerd_config, named, loaded)
    r.dirs = list(hosts_dirs(settings.hosts_dir, cd.cri))
    r.endpoint_hosts = {host, *([DOCKER_HUB_REGISTRY] if host == DOCKER_HUB else [])}
    with contextlib.suppress(ConfigError):  # a broken hosts.toml is a finding below
        r.endpoint_hosts |= {h.host for h in resolve_hosts(host, hosts_dirs=r.dirs, cri=cd.cri)}
    cd.lint()
    HostsLint(r, cd).lint()
    # each file's findings together (in the order the files came up), in line order
    order: dict[str, int] = {}
    for f in r.findings:
        order.setdefault(f.file, len(order))
    return sorted(r.findings, key=lambda f: (order[f.file], f.line or 0))


def registry_of(target: str) -> str:
    """The registry host of an image reference, or a registry host as given."""
    if "/" not in target and ("." in target or ":" in target or target == "localhost"):
        key = auth_key(target)
        return DOCKER_HUB if key == DOCKER_HUB_KEY else key
    return parse_docker_ref(target).domain
