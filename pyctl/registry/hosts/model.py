"""The registry configuration's model: the endpoints to try for a registry (containerd's
``docker.RegistryHost``), the CRI plugin's registry settings, and the names every part of it
shares."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple, TypeVar

from pyctl.registry.hosts import golang

T = TypeVar("T")

CAPABILITIES = ("pull", "resolve", "push", "referrers")
ALL_CAPABILITIES: frozenset[str] = frozenset(CAPABILITIES)

DOCKER_HUB = "docker.io"
DOCKER_HUB_LEGACY = "index.docker.io"
DOCKER_HUB_REGISTRY = "registry-1.docker.io"

DEFAULT_HOSTS_DIRS = ("/etc/containerd/certs.d", "/etc/docker/certs.d")
HOSTS_FILE = "hosts.toml"
DEFAULT_DIR = "_default"
EMPTY: Mapping[Any, Any] = MappingProxyType({})  # the default of a mapping field: read-only


class RegistryHost(NamedTuple):
    """One endpoint to try, in the shape containerd's ``docker.RegistryHost`` has."""

    scheme: str
    host: str
    path: str
    capabilities: frozenset[str]
    ca: tuple[str, ...] = ()
    client: tuple[tuple[str, str], ...] = ()
    skip_verify: bool | None = None
    headers: Mapping[str, tuple[str, ...]] = EMPTY
    override_path: bool = False
    dial_timeout: float | None = None
    http_fallback: bool = False
    is_mirror: bool = False
    source: str = "default"

    @classmethod
    def unfilled(cls, source: str) -> RegistryHost:
        """The root entry before the default upstream fills it in (no host yet)."""
        return cls(scheme="", host="", path="", capabilities=ALL_CAPABILITIES, source=source)

    def url(self, *parts: str) -> str:
        """``scheme://host`` + ``path.Join("/", path, *parts)``, keeping a trailing ``/``.

        ``url("library/ubuntu", "manifests", "latest")`` on ``/v2`` gives
        ``…/v2/library/ubuntu/manifests/latest``; ``url("r", "blobs/uploads/")`` keeps the
        trailing slash (containerd ``dockerBase.request``).
        """
        joined = golang.join("/", self.path, *parts)
        if parts and parts[-1].endswith("/") and not joined.endswith("/"):
            joined += "/"
        return f"{self.scheme}://{self.host}{joined}"

    def has(self, capability: str) -> bool:
        return capability in self.capabilities

    def needs_ns(self, ref_host: str) -> bool:
        """Whether requests to this endpoint carry ``?ns=<ref_host>`` (containerd ``isProxy``)."""
        ref = canonical_ref_host(ref_host)
        if ref == self.host:
            return False
        return not (ref == DOCKER_HUB and self.host == DOCKER_HUB_REGISTRY)

    @property
    def explicit_tls(self) -> bool:
        """``ca``, ``client`` or ``skip_verify`` set: the entry carries its own TLS settings."""
        return bool(self.ca) or bool(self.client) or self.skip_verify is not None

    @property
    def port(self) -> str:
        """The explicit port of ``host`` ("" when none), like Go's ``net.SplitHostPort``."""
        return golang.split_host_port(self.host)[1]


class CriHostConfig(NamedTuple):
    """``registry.configs."HOST"`` of containerd's CRI config: ``tls`` and ``auth``."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    insecure_skip_verify: bool = False
    username: str = ""
    password: str = ""
    auth: str = ""
    identity_token: str = ""
    has_tls: bool = False  # a [tls] table was present (then insecure_skip_verify is meaningful)
    has_auth: bool = False  # an [auth] table was present
    tls_from: tuple[str, ...] = ()  # the containerd config file(s) that set the tls table
    auth_from: tuple[str, ...] = ()  # ... and the auth table


class CriRegistryConfig(NamedTuple):
    """The registry settings of containerd's config (CRI plugin), merged over its imports."""

    path: str = ""  # the main config file
    config_path: str = ""
    mirrors: Mapping[str, tuple[str, ...]] = EMPTY
    configs: Mapping[str, CriHostConfig] = EMPTY
    headers: Mapping[str, tuple[str, ...]] = EMPTY
    config_path_from: tuple[str, ...] = ()  # the file(s) config_path came from
    mirrors_from: Mapping[str, tuple[str, ...]] = EMPTY

    @property
    def config_paths(self) -> list[str]:
        """``config_path`` split like Go's ``filepath.SplitList`` (``:``), empties dropped."""
        return [p for p in self.config_path.split(os.pathsep) if p]

    @property
    def has_legacy(self) -> bool:
        return bool(self.mirrors) or bool(self.configs)


def canonical_ref_host(ref_host: str) -> str:
    """``index.docker.io`` is Docker Hub's legacy name: treat it as ``docker.io``."""
    return DOCKER_HUB if ref_host == DOCKER_HUB_LEGACY else ref_host


def registry_endpoint_hosts(ref_host: str, hosts: Sequence[RegistryHost]) -> frozenset[str]:
    """The hosts that are the registry itself, not mirrors: the image's registry host and its
    ``server``'s. An endpoint on one of them is the registry whatever its place in hosts.toml
    (a ``[host."https://harbor.local:8443"]`` entry for ``server = "https://harbor.local:8443"``
    is common in certs.d files) and gets the registry's credentials; a mirror elsewhere gets
    only its own."""
    ref = canonical_ref_host(ref_host)
    out = {ref, *(h.host for h in hosts if not h.is_mirror)}
    if ref == DOCKER_HUB:
        out.add(DOCKER_HUB_REGISTRY)
    return frozenset(out)


def endpoint_credential(
    ref_host: str, netloc: str, own: frozenset[str], lookup: Callable[[str], T]
) -> T | None:
    """What a request to endpoint ``netloc`` authenticates with, ``lookup`` finding what is
    stored for a host: the registry's own hosts (``own``, :func:`registry_endpoint_hosts`)
    use the registry's credentials, then their own; a mirror only its own."""
    cred = lookup(ref_host) if netloc in own else None
    if cred is None and netloc != ref_host:
        cred = lookup(netloc)
    return cred


def sources_text(files: Sequence[str]) -> str:
    """Files a setting came from, for ``RegistryHost.source`` and messages: each once."""
    return ", ".join(dict.fromkeys(f for f in files if f))
