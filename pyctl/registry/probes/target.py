"""What ``hosts --check`` probes, and with what: the registry's endpoints as a pull resolves them
and a :class:`~pyctl.registry.distribution.Repository` over all of them, so that every request
of the check goes through the pull's own transport, TLS settings, auth flow and credential
rule (a mirror on another host gets only its own credentials)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from pyctl.reference import Reference
from pyctl.registry.connect import RegistryConfig
from pyctl.registry.distribution import Repository
from pyctl.registry.hosts.golang import split_host_port
from pyctl.registry.hosts.model import RegistryHost
from pyctl.registry.hosts.provenance import Provenance


@dataclass
class Target:
    rc: RegistryConfig
    registry: str  # the image's registry host (docker.io, harbor.local:8443)
    reference: Reference | None  # None: only the registry host was given
    endpoints: list[RegistryHost]  # in pull order
    repo: Repository  # through every endpoint; requests sent once, each within ``timeout``
    timeout: float

    @property
    def insecure(self) -> bool:
        return self.rc.settings.insecure_registry

    @property
    def provenance(self) -> Provenance:
        return self.repo.provenance

    @property
    def what(self) -> str:
        """The tag or digest a pull asks for ("" without a reference)."""
        ref = self.reference
        return "" if ref is None else (ref.digest or ref.tag or "latest")


def hostname(host: RegistryHost) -> str:
    """The endpoint's host name or address (no port, no brackets)."""
    return urlsplit(f"{host.scheme}://{host.host}").hostname or split_host_port(host.host)[0]


def port(host: RegistryHost) -> int:
    explicit = host.port
    if explicit.isdigit():
        return int(explicit)
    return 443 if host.scheme == "https" else 80


def url(host: RegistryHost) -> str:
    """``scheme://host/v2``, as the endpoint is configured."""
    return f"{host.scheme}://{host.host}{host.path}"
