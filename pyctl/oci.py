"""OCI / Docker image model: media types, descriptors, manifests, indexes, platforms.

Pure data and parsing; no I/O. Every store (containerd, registry, archive) speaks these types.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, NamedTuple

from pyctl.errors import PyctlError

# Media types -----------------------------------------------------------------------------------

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})

# containerd refuses manifests bigger than this (4 * 1048 * 1048 bytes).
MAX_MANIFEST_SIZE = 4 * 1048 * 1048

ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"

_DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}")
# containerd's int64 sizes
MAX_SIZE = (1 << 63) - 1


def is_index(media_type: str) -> bool:
    return media_type in INDEX_TYPES


def is_manifest(media_type: str) -> bool:
    return media_type in MANIFEST_TYPES


def is_layer(media_type: str) -> bool:
    return media_type.startswith("application/vnd.oci.image.layer.") or media_type.startswith(
        "application/vnd.docker.image.rootfs."
    )


def is_config(media_type: str) -> bool:
    return media_type in CONFIG_TYPES


def sha256_digest(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def is_digest(value: object) -> bool:
    """A digest pyctl can verify: ``sha256:`` and 64 lowercase hex digits (pyctl verifies
    sha256 only, as its references do)."""
    return isinstance(value, str) and _DIGEST_RE.fullmatch(value) is not None


def digest_problem(digest: object) -> str | None:
    """Why ``digest`` is not a digest pyctl can verify (None when it is one, see
    :func:`is_digest`). Digests end up in URLs and ingest refs, so anything else is refused
    before it is used."""
    if not isinstance(digest, str):
        return "the digest is not a string"
    if is_digest(digest):
        return None
    algorithm, sep, _ = digest.partition(":")
    if sep and algorithm in ("sha384", "sha512"):
        return f'unsupported digest algorithm in "{_shown(digest)}" (pyctl verifies sha256 only)'
    return f'invalid digest "{_shown(digest)}" (want sha256: and 64 lowercase hex digits)'


def _shown(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


# Platforms -------------------------------------------------------------------------------------


class Platform(NamedTuple):
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        parts = [self.os, self.architecture]
        if self.variant:
            parts.append(self.variant)
        return "/".join(parts)

    def to_json(self) -> dict[str, str]:
        out = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Platform:
        def text(key: str) -> str:
            value = data.get(key)
            return value if isinstance(value, str) else ""

        return cls(os=text("os"), architecture=text("architecture"), variant=text("variant"))


_ARCH_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "aarch64": "arm64",
    "armhf": "arm",
    "armel": "arm",
    "i386": "386",
    "i686": "386",
}


def normalize_platform(p: Platform) -> Platform:
    arch = _ARCH_ALIASES.get(p.architecture.lower(), p.architecture.lower())
    os_ = p.os.lower()
    variant = p.variant.lower()
    if arch == "arm64" and variant in ("8", "v8"):
        variant = ""
    elif arch == "arm":
        variant = {"": "v7", "5": "v5", "6": "v6", "7": "v7", "8": "v8"}.get(variant, variant)
    elif arch == "amd64" and variant == "v1":
        variant = ""
    return Platform(os_, arch, variant)


def parse_platform(spec: str) -> Platform:
    """Parse ``os/arch[/variant]`` (or just ``arch``)."""
    parts = spec.strip().split("/")
    if not spec.strip() or any(not part for part in parts) or len(parts) > 3:
        raise PyctlError(
            f'invalid platform "{spec}": use OS/ARCH[/VARIANT], e.g. linux/amd64 or linux/arm/v7'
        )
    if len(parts) == 1:
        known = set(_ARCH_ALIASES) | set(_ARCH_ALIASES.values()) | {"arm64", "arm"}
        if parts[0].lower() in known:
            return normalize_platform(Platform("linux", parts[0]))
        return normalize_platform(Platform(parts[0], host_platform().architecture))
    return normalize_platform(Platform(*parts))


@functools.cache  # the machine does not change under a running pyctl
def host_platform() -> Platform:
    machine = os.uname().machine.lower()
    arch = _ARCH_ALIASES.get(machine, machine)
    variant = ""
    if arch == "arm":
        variant = "v" + machine[5] if machine.startswith("armv") and len(machine) > 5 else "v7"
    return normalize_platform(Platform("linux", arch, variant))


_ARM_VARIANTS = ["v5", "v6", "v7", "v8"]


def platform_matches(want: Platform, have: Platform) -> bool:
    """Whether an image for ``have`` runs on ``want`` (containerd's Only() semantics, roughly:
    arm v7 also runs v6 and v5; arm64 runs arm64 of any declared variant)."""
    want, have = normalize_platform(want), normalize_platform(have)
    if want.os != have.os or want.architecture != have.architecture:
        return False
    if want.variant == have.variant:
        return True
    if (
        want.architecture == "arm"
        and want.variant in _ARM_VARIANTS
        and have.variant in _ARM_VARIANTS
    ):
        return _ARM_VARIANTS.index(have.variant) <= _ARM_VARIANTS.index(want.variant)
    return want.architecture == "arm64" and have.variant in ("", "v8")


def platform_rank(want: Platform, have: Platform) -> int:
    """Lower is better; only meaningful when ``platform_matches``."""
    want, have = normalize_platform(want), normalize_platform(have)
    if want.variant == have.variant:
        return 0
    if (
        want.architecture == "arm"
        and have.variant in _ARM_VARIANTS
        and want.variant in _ARM_VARIANTS
    ):
        return _ARM_VARIANTS.index(want.variant) - _ARM_VARIANTS.index(have.variant)
    return 1


# Descriptors and documents ---------------------------------------------------------------------


class Descriptor(NamedTuple):
    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = {}
    platform: Platform | None = None
    urls: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: Any, where: str = "descriptor") -> Descriptor:
        """A descriptor from its JSON object, checked the way Go's typed unmarshalling and
        containerd would check it: strings where strings belong, an integer size that fits
        int64, a digest containerd can verify."""
        if not isinstance(data, dict):
            raise PyctlError(f"invalid {where}: not a JSON object")
        media_type = data.get("mediaType", "")
        if not isinstance(media_type, str):
            raise PyctlError(f"invalid {where}: mediaType is not a string")
        if "digest" not in data or "size" not in data:
            missing = "digest" if "digest" not in data else "size"
            raise PyctlError(f"invalid {where}: no {missing}")
        digest = data["digest"]
        problem = digest_problem(digest)
        if problem:
            raise PyctlError(f"invalid {where}: {problem}")
        size = data["size"]
        if not isinstance(size, int) or isinstance(size, bool):
            raise PyctlError(f"invalid {where}: size is not an integer")
        if not 0 <= size <= MAX_SIZE:
            raise PyctlError(f"invalid {where}: size {size} is out of range")
        plat = data.get("platform")
        if plat is not None and not isinstance(plat, dict):
            raise PyctlError(f"invalid {where}: platform is not an object")
        urls = data.get("urls") or []
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise PyctlError(f"invalid {where}: urls is not a list of strings")
        return cls(
            media_type=media_type,
            digest=digest,
            size=size,
            annotations=string_map(data.get("annotations"), f"{where} annotations"),
            platform=Platform.from_json(plat) if plat is not None else None,
            urls=tuple(urls),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        return out


def string_map(value: Any, what: str) -> dict[str, str]:
    """An ``annotations`` / ``labels`` object: absent or null is empty, else string values."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise PyctlError(f"invalid {what}: not an object of strings")
    return dict(value)


def _load_json(data: bytes, what: str) -> dict[str, Any]:
    if len(data) > MAX_MANIFEST_SIZE:
        raise PyctlError(f"{what} is too large ({len(data)} bytes, limit {MAX_MANIFEST_SIZE})")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PyctlError(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise PyctlError(f"{what} is not valid JSON: nested too deeply") from None
    if not isinstance(doc, dict):
        raise PyctlError(f"{what} is not a JSON object")
    return doc


class Index(NamedTuple):
    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = {}

    @classmethod
    def parse(cls, data: bytes, media_type: str = OCI_INDEX) -> Index:
        doc = _load_json(data, "index")
        entries = doc.get("manifests")
        if not isinstance(entries, list):
            raise PyctlError("invalid index: no manifests list")
        return cls(
            media_type=str(doc.get("mediaType") or media_type),
            manifests=tuple(Descriptor.from_json(m, "index entry") for m in entries),
            annotations=string_map(doc.get("annotations"), "index annotations"),
        )


class Manifest(NamedTuple):
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = {}

    @classmethod
    def parse(cls, data: bytes, media_type: str = OCI_MANIFEST) -> Manifest:
        doc = _load_json(data, "manifest")
        if doc.get("schemaVersion") == 1:
            raise PyctlError("Docker schema 1 manifests are not supported")
        layers = doc.get("layers")
        if not isinstance(layers, list):
            raise PyctlError("invalid manifest: no layers list")
        return cls(
            media_type=str(doc.get("mediaType") or media_type),
            config=Descriptor.from_json(doc.get("config"), "manifest config"),
            layers=tuple(Descriptor.from_json(x, "manifest layer") for x in layers),
            annotations=string_map(doc.get("annotations"), "manifest annotations"),
        )

    def children(self) -> list[Descriptor]:
        return [self.config, *self.layers]


class ImageConfig(NamedTuple):
    """The parts of an image config JSON pyctl uses, plus the raw document."""

    platform: Platform
    created: str | None
    diff_ids: tuple[str, ...]
    config: Mapping[str, Any]
    raw: Mapping[str, Any]

    @property
    def created_at(self) -> datetime | None:
        """When the image was built (``created``), if the config says so readably."""
        return parse_rfc3339(self.created) if self.created else None

    @classmethod
    def parse(cls, data: bytes) -> ImageConfig:
        doc = _load_json(data, "image config")
        rootfs = doc.get("rootfs") or {}
        diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        if not isinstance(diff_ids, list):
            diff_ids = []
        cfg = doc.get("config")
        return cls(
            platform=Platform.from_json(doc),
            created=str(doc["created"]) if doc.get("created") else None,
            diff_ids=tuple(str(d) for d in diff_ids),
            config=cfg if isinstance(cfg, dict) else {},
            raw=doc,
        )


_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$"
)


def parse_rfc3339(text: str) -> datetime | None:
    """A timestamp as Go writes them (``2024-05-01T10:00:00.123456789Z``, nanoseconds
    allowed) as an aware datetime; None when it is not one, or is Go's zero time."""
    m = _RFC3339.match(text.strip())
    if m is None:
        return None
    day, clock, frac, zone = m.groups()
    micro = (frac or "").ljust(6, "0")[:6]
    tz = "+00:00" if zone in ("Z", "z") else zone
    try:
        dt = datetime.fromisoformat(f"{day}T{clock}.{micro}{tz}")
    except ValueError:
        return None
    return None if dt.year == 1 else dt


def chain_ids(diff_ids: Iterable[str]) -> list[str]:
    """OCI chain IDs: chain[0] = diff[0]; chain[i] = sha256(chain[i-1] + " " + diff[i])."""
    out: list[str] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            out.append(sha256_digest(f"{out[-1]} {diff_id}".encode()))
    return out
