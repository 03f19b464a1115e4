"""From pyctl's settings to a ready :class:`~pyctl.registry.distribution.Repository`: the
hosts directories, containerd's CRI config, the endpoints of a registry and the keychains
(config.json and its helpers, then the CRI ``auth``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from pyctl.config import Settings
from pyctl.registry.credentials import Credential, Keychains
from pyctl.registry.credentials.cri import CriKeychain
from pyctl.registry.credentials.docker_config import DockerConfig
from pyctl.registry.distribution import Repository
from pyctl.registry.hosts.certsd import hosts_dirs
from pyctl.registry.hosts.containerd_config import ContainerdConfig, load_containerd_config
from pyctl.registry.hosts.cri import cri_registry_config
from pyctl.registry.hosts.model import CriRegistryConfig, RegistryHost
from pyctl.registry.hosts.resolve import resolve_hosts


class RegistryConfig(NamedTuple):
    """Everything a command needs to reach registries, loaded once per run."""

    settings: Settings
    containerd: ContainerdConfig  # containerd's config with its imports, merged
    cri: CriRegistryConfig  # its CRI registry section
    dirs: list[str]
    docker: DockerConfig

    @classmethod
    def load(cls, settings: Settings) -> RegistryConfig:
        # A file the operator named must exist; the default may be absent; "" means none.
        path = settings.containerd_config
        named = settings.sources.get("containerd_config", "default") != "default"
        containerd = load_containerd_config(path, required=named)
        cri = cri_registry_config(containerd)
        return cls(
            settings=settings,
            containerd=containerd,
            cri=cri,
            dirs=hosts_dirs(settings.hosts_dir, cri),
            docker=DockerConfig.load(),
        )

    def hosts(self, ref_host: str) -> list[RegistryHost]:
        return resolve_hosts(
            ref_host,
            hosts_dirs=self.dirs,
            cri=self.cri,
            insecure=self.settings.insecure_registry,
        )

    def credential(self, host: str) -> Credential | None:
        """Credentials for ``host``: the host a request really goes to (a mirror uses its own
        credentials, never those of the image's registry)."""
        return Keychains([self.docker, CriKeychain(self.cri)]).resolve(host)

    def repository(
        self,
        ref_host: str,
        repository: str,
        *,
        push: bool = False,
        pool: int = 8,
        endpoints: Sequence[RegistryHost] | None = None,
        credential: Credential | None = None,
        timeout: float | None = None,
        retry: bool = True,
    ) -> Repository:
        """``repository`` of registry ``ref_host`` through its endpoints (or ``endpoints``),
        with the stored credentials (or ``credential``, as login tries it); ``timeout`` and
        ``retry`` as ``hosts --check`` sends (see :class:`~pyctl.registry.retry.Sender`)."""
        keychain = self.credential if credential is None else (lambda _host: credential)
        return Repository(
            ref_host,
            repository,
            self.hosts(ref_host) if endpoints is None else endpoints,
            keychain,
            push=push,
            insecure=self.settings.insecure_registry,
            debug=self.settings.debug,
            pool=pool,
            hosts_dirs=self.dirs,
            timeout=timeout,
            retry=retry,
        )
