"""Images: what `images` and `inspect` return."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from pyctl.reference import Reference


class ImagePlatform(NamedTuple):
    """One platform of an image whose manifest, config and layers are all present."""

    platform: str  # os/arch[/variant]
    manifest_digest: str
    config_digest: str  # the IMAGE ID crictl and docker show
    created: datetime | None  # when it was built (config "created"), else the record's time
    size: int  # bytes unpacked in the snapshotter (0: not unpacked)
    blob_size: int  # bytes of manifest, config and layers


class Image(NamedTuple):
    """An image record: a name and the descriptor it points to."""

    name: str  # full, normalized: docker.io/library/busybox:latest
    digest: str  # the target's (index or manifest) digest
    media_type: str
    target_size: int
    created: datetime | None  # built (this machine's platform), else when the record was made
    labels: Mapping[str, str] = {}
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
