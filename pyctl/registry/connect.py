"""From pyctl's settings to a ready :class:`Registry`: hosts directories, CRI config,
endpoints and the credential lookup (config.json and helpers, then CRI ``auth``)."""

from __future__ import annotations

from dataclasses import dataclass

from pyctl.config import Settings
from pyctl.registry.auth import Credential, DockerConfig, cri_credential
from pyctl.registry.client import Registry
from pyctl.registry.hosts.certsd import hosts_dirs
from pyctl.registry.hosts.containerd_config import ContainerdConfig, load_containerd_config
from pyctl.registry.hosts.cri import cri_registry_config
from pyctl.registry.hosts.model import CriRegistryConfig, RegistryHost, sources_text
from pyctl.registry.hosts.resolve import resolve_hosts


@dataclass
class RegistryConfig:
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
        cred = self.docker.get(host)
        if cred is not None:
            return cred
        cfg = self.cri.configs.get(host)
        if cfg is not None:
            return cri_credential(cfg, f"CRI config {sources_text(cfg.auth_from) or self.cri.path}")
        return None

    def registry(
        self, ref_host: str, repository: str, *, push: bool = False, pool: int = 8
    ) -> Registry:
        return Registry(
            ref_host,
            repository,
            self.hosts(ref_host),
            self.credential,
            push=push,
            insecure=self.settings.insecure_registry,
            debug=self.settings.debug,
            pool=pool,
            hosts_dirs=self.dirs,
        )
