"""What pyctl's operations return: typed, raw values (bytes, full digests, datetimes).

These are the objects of the Python API (``pyctl.connect()``); the CLI formats them (short
IDs, human sizes, relative times). Only the standard library is imported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyctl.reference import Reference
    from pyctl.registry.lint import Finding


@dataclass(frozen=True)
class ImagePlatform:
    """One platform of an image whose manifest, config and layers are all present."""

    platform: str  # os/arch[/variant]
    manifest_digest: str
    config_digest: str  # the IMAGE ID crictl and docker show
    created: datetime | None  # when it was built (config "created"), else the record's time
    size: int  # bytes unpacked in the snapshotter (0: not unpacked)
    blob_size: int  # bytes of manifest, config and layers


@dataclass(frozen=True)
class Image:
    """An image record: a name and the descriptor it points to."""

    name: str  # full, normalized: docker.io/library/busybox:latest
    digest: str  # the target's (index or manifest) digest
    media_type: str
    target_size: int
    created: datetime | None  # built (this machine's platform), else when the record was made
    labels: Mapping[str, str] = field(default_factory=dict)
    platforms: tuple[ImagePlatform, ...] = ()  # present locally
    config_digest: str = ""  # this machine's platform's ("" when none is present)
    size: int = 0  # this machine's platform unpacked

    @property
    def repository(self) -> str:
        """The full repository name without tag or digest (``docker.io/library/busybox``;
        ``""`` for a ``sha256:<config>`` record)."""
        ref = self._ref()
        return ref.name if ref is not None else ""

    @property
    def tag(self) -> str:
        """The tag (``""`` for a ``repo@sha256:…`` record)."""
        ref = self._ref()
        return (ref.tag or "") if ref is not None else ""

    def _ref(self) -> Reference | None:
        from pyctl.errors import InvalidReferenceError
        from pyctl.reference import parse_docker_ref

        try:
            return parse_docker_ref(self.name)
        except InvalidReferenceError:
            return None


@dataclass(frozen=True)
class ContainerInfo:
    """A container and its task, as `ps` sees them."""

    id: str
    name: str  # nerdctl/name, k8s://NS/POD/CONTAINER, else the ID
    image: str
    command: str
    created: datetime | None
    state: str  # created, running, paused, pausing, exited, unknown
    exit_code: int | None  # when exited
    exited_at: datetime | None
    pid: int  # 0 without a running task
    labels: Mapping[str, str] = field(default_factory=dict)
    runtime: str = ""
    snapshotter: str = ""
    ports: tuple[str, ...] = ()  # HOSTIP:PORT->PORT/PROTO, from nerdctl's label
    size: int | None = None  # writable layer bytes (when asked for)
    virtual_size: int | None = None  # image layers + writable layer


@dataclass(frozen=True)
class NamespaceInfo:
    name: str
    containers: int
    images: int  # as `images` counts them (the CRI plugin's extra records folded)
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PullResult:
    reference: str  # the full, normalized name the image got
    digest: str
    written: int  # blobs fetched
    existing: int  # blobs containerd had
    unpacked: tuple[str, ...]  # platforms unpacked


@dataclass(frozen=True)
class PushResult:
    reference: str
    tag: str
    digest: str
    size: int
    uploaded: int
    mounted: int
    existing: int


@dataclass(frozen=True)
class Imported:
    """An image record an import made."""

    name: str
    digest: str
    unpacked: bool


@dataclass(frozen=True)
class CheckVerdict:
    """Whether a pull would work, as far as the checks went."""

    ok: bool
    endpoint: str | None  # the endpoint a pull would use (None until endpoints are probed)
    reason: str  # why not, or what was checked


@dataclass(frozen=True)
class HostsCheck:
    """``pyctl hosts --check``: configuration findings, then (to come: issue 12, item 2) the
    probes of each endpoint in pull order, and the verdict."""

    registry: str
    config: tuple[Finding, ...]
    verdict: CheckVerdict
    endpoints: tuple[()] = ()  # each endpoint's steps, once endpoints are probed

    def as_dict(self) -> dict[str, object]:
        """The ``--format json`` document: ``config``, ``endpoints``, ``verdict``."""
        return {
            "config": [f.as_dict() for f in self.config],
            "endpoints": list(self.endpoints),
            "verdict": {
                "ok": self.verdict.ok,
                "registry": self.registry,
                "endpoint": self.verdict.endpoint,
                "reason": self.verdict.reason,
            },
        }
