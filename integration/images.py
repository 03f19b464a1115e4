"""Offline, deterministic synthesis of container images for the integration tests.

Stdlib only.  Everything here is pure data: blobs are built in memory (the busybox layer is
about 1 MiB gzipped), their digests are stable across runs on the same machine (fixed mtimes,
sorted entries, gzip mtime 0), and every digest, size and diff_id is exposed so tests can
assert exact values.

Typical use::

    img = build_image()                                   # runnable busybox, host platform
    arc = write_oci_archive(tmp / "bb.tar", img, "docker.io/library/busybox:latest")
    arc.image.manifest.digest, arc.image.config.digest, arc.image.diff_ids

    idx = build_index()                                   # host (runnable) + other + arm/v7
    write_oci_archive(tmp / "multi.tar", idx, "example.test/multi:1")

Archive naming (what ``ctr images import`` makes of it, containerd 1.6 to 2.x): every entry of the
archive's ``index.json`` carries ``io.containerd.image.name=<name>`` (taken verbatim, not
normalized: pass a full reference such as ``docker.io/library/busybox:latest``) and
``org.opencontainers.image.ref.name=<tag>`` (what skopeo's ``oci-archive:PATH:TAG`` matches).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import platform as _platform
import subprocess
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

__all__ = [
    "BUSYBOX_APPLETS",
    "CREATED",
    "DOCKER",
    "HOST_PLATFORM",
    "OCI",
    "Archive",
    "Blob",
    "ImageSpec",
    "IndexSpec",
    "MediaTypes",
    "Platform",
    "build_image",
    "build_index",
    "host_arch",
    "import_into",
    "write_oci_archive",
    "write_oci_layout",
]

# Fixed timestamps so digests are stable.
CREATED = "2024-01-01T00:00:00Z"
_MTIME = 1704067200  # CREATED as a unix timestamp

BUSYBOX_PATH = "/bin/busybox"
# Applets linked into /bin (-> busybox).  Extra ones cost nothing and help exec/logs tests.
BUSYBOX_APPLETS: tuple[str, ...] = (
    "cat",
    "echo",
    "env",
    "false",
    "hostname",
    "id",
    "ls",
    "mkdir",
    "printenv",
    "ps",
    "pwd",
    "rm",
    "sh",
    "sleep",
    "test",
    "touch",
    "true",
    "wc",
)
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# --------------------------------------------------------------------------------------------
# Platforms and media types


@dataclass(frozen=True, order=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``linux/arm/v7`` -> Platform("linux", "arm", "v7")."""
        parts = text.split("/")
        if len(parts) not in (2, 3):
            raise ValueError(f"bad platform {text!r}")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    def __str__(self) -> str:
        base = f"{self.os}/{self.architecture}"
        return f"{base}/{self.variant}" if self.variant else base

    def to_json(self) -> dict[str, str]:
        d = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            d["variant"] = self.variant
        return d


def host_arch() -> str:
    """GOARCH-style name of the host architecture."""
    m = _platform.machine().lower()
    return {
        "x86_64": "amd64",
        "amd64": "amd64",
        "aarch64": "arm64",
        "arm64": "arm64",
        "armv7l": "arm",
        "ppc64le": "ppc64le",
        "s390x": "s390x",
        "riscv64": "riscv64",
        "i686": "386",
        "i386": "386",
    }.get(m, m)


def _host_platform() -> Platform:
    arch = host_arch()
    # containerd normalizes arm64 to variant v8 when matching; the image itself omits it.
    return Platform("linux", arch, "v7" if arch == "arm" else None)


HOST_PLATFORM: Platform = _host_platform()


def other_platform() -> Platform:
    """A real-world platform that is *not* the host one (linux/arm64 or linux/amd64)."""
    return Platform("linux", "amd64" if HOST_PLATFORM.architecture != "amd64" else "arm64")


@dataclass(frozen=True)
class MediaTypes:
    kind: Literal["oci", "docker"]
    index: str
    manifest: str
    config: str
    layer_gzip: str


OCI = MediaTypes(
    kind="oci",
    index="application/vnd.oci.image.index.v1+json",
    manifest="application/vnd.oci.image.manifest.v1+json",
    config="application/vnd.oci.image.config.v1+json",
    layer_gzip="application/vnd.oci.image.layer.v1.tar+gzip",
)
DOCKER = MediaTypes(
    kind="docker",
    index="application/vnd.docker.distribution.manifest.list.v2+json",
    manifest="application/vnd.docker.distribution.manifest.v2+json",
    config="application/vnd.docker.container.image.v1+json",
    layer_gzip="application/vnd.docker.image.rootfs.diff.tar.gzip",
)
OCI_LAYOUT_INDEX = OCI.index

ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"


def _media(media: MediaTypes | Literal["oci", "docker"]) -> MediaTypes:
    if isinstance(media, MediaTypes):
        return media
    if media == "oci":
        return OCI
    if media == "docker":
        return DOCKER
    raise ValueError(f"unknown media type family {media!r}")


# --------------------------------------------------------------------------------------------
# Blobs and specs


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> bytes:
    """Compact JSON with sorted keys: deterministic bytes for manifests/configs."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes = field(repr=False)
    digest: str = field(init=False)
    size: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", sha256_digest(self.data))
        object.__setattr__(self, "size", len(self.data))

    @property
    def hex(self) -> str:
        return self.digest.split(":", 1)[1]

    def descriptor(
        self,
        *,
        platform: Platform | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if platform is not None:
            d["platform"] = platform.to_json()
        if annotations:
            d["annotations"] = dict(annotations)
        return d

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass(frozen=True)
class ImageSpec:
    """One single-platform image: manifest + config + layers, all in memory."""

    platform: Platform
    media: MediaTypes
    manifest: Blob
    config: Blob
    layers: tuple[Blob, ...]
    diff_ids: tuple[str, ...]
    runnable: bool

    # Convenience accessors for assertions.
    @property
    def digest(self) -> str:
        """The manifest digest (what a record for this image targets)."""
        return self.manifest.digest

    @property
    def manifest_digest(self) -> str:
        return self.manifest.digest

    @property
    def config_digest(self) -> str:
        return self.config.digest

    @property
    def layer_digests(self) -> tuple[str, ...]:
        return tuple(b.digest for b in self.layers)

    @property
    def image_id(self) -> str:
        """Docker-style image ID (the config digest)."""
        return self.config.digest

    @property
    def content_size(self) -> int:
        """manifest + config + compressed layers (the size `ctr images ls` shows)."""
        return self.manifest.size + self.config.size + sum(b.size for b in self.layers)

    @property
    def config_json(self) -> dict[str, Any]:
        result: dict[str, Any] = self.config.json()
        return result

    @property
    def media_type(self) -> str:
        return self.manifest.media_type

    @property
    def biggest_layer(self) -> Blob:
        return max(self.layers, key=lambda b: b.size)

    def blobs(self) -> list[Blob]:
        return [self.manifest, self.config, *self.layers]


@dataclass(frozen=True)
class IndexSpec:
    """A multi-platform image: an index blob plus its per-platform manifests."""

    media: MediaTypes
    index: Blob
    manifests: tuple[ImageSpec, ...]

    @property
    def digest(self) -> str:
        return self.index.digest

    @property
    def index_digest(self) -> str:
        return self.index.digest

    @property
    def media_type(self) -> str:
        return self.index.media_type

    @property
    def platforms(self) -> tuple[Platform, ...]:
        return tuple(m.platform for m in self.manifests)

    @property
    def manifest_digests(self) -> dict[str, str]:
        """``{"linux/amd64": "sha256:…", …}``"""
        return {str(m.platform): m.manifest.digest for m in self.manifests}

    def for_platform(self, plat: Platform | str) -> ImageSpec:
        p = Platform.parse(plat) if isinstance(plat, str) else plat
        for m in self.manifests:
            if m.platform == p:
                return m
        raise KeyError(str(p))

    @property
    def host(self) -> ImageSpec:
        """The runnable host-platform image."""
        return self.for_platform(HOST_PLATFORM)

    @property
    def content_size(self) -> int:
        """Index + every manifest's blobs (shared blobs counted once)."""
        seen: dict[str, int] = {self.index.digest: self.index.size}
        for m in self.manifests:
            for b in m.blobs():
                seen[b.digest] = b.size
        return sum(seen.values())

    def blobs(self) -> list[Blob]:
        out = [self.index]
        for m in self.manifests:
            out.extend(m.blobs())
        return out


AnyImage = ImageSpec | IndexSpec


# --------------------------------------------------------------------------------------------
# Layers


@dataclass(frozen=True)
class _Entry:
    path: str  # relative, no leading slash; directories without trailing slash
    kind: Literal["dir", "file", "symlink"]
    data: bytes = b""
    target: str = ""
    mode: int = 0o644


def _tar_bytes(entries: Iterable[_Entry]) -> bytes:
    """Deterministic uncompressed tar of the entries (sorted by path)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for e in sorted(entries, key=lambda x: x.path):
            ti = tarfile.TarInfo(e.path)
            ti.mtime = _MTIME
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = ""
            ti.mode = e.mode
            if e.kind == "dir":
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
            elif e.kind == "symlink":
                ti.type = tarfile.SYMTYPE
                ti.linkname = e.target
                ti.mode = 0o777
                tf.addfile(ti)
            else:
                ti.type = tarfile.REGTYPE
                ti.size = len(e.data)
                tf.addfile(ti, io.BytesIO(e.data))
    return buf.getvalue()


_GZIP_CACHE: dict[str, bytes] = {}


def _gzip(data: bytes) -> bytes:
    """Deterministic gzip (mtime 0, no file name); cached since busybox is ~2 MiB."""
    key = sha256_digest(data)
    cached = _GZIP_CACHE.get(key)
    if cached is not None:
        return cached
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=6) as gz:
        gz.write(data)
    out = buf.getvalue()
    if len(data) > 64 * 1024:
        _GZIP_CACHE[key] = out
    return out


def _dirs_for(paths: Iterable[str]) -> list[_Entry]:
    dirs: set[str] = set()
    for p in paths:
        parts = p.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    return [_Entry(d, "dir", mode=0o755) for d in sorted(dirs)]


def _files_layer(files: Mapping[str, bytes | str], extra: Sequence[_Entry] = ()) -> bytes:
    entries: list[_Entry] = list(extra)
    for path, content in files.items():
        data = content.encode() if isinstance(content, str) else content
        entries.append(_Entry(path.lstrip("/"), "file", data=data))
    names = [e.path for e in entries]
    have = {e.path for e in entries if e.kind == "dir"}
    entries += [d for d in _dirs_for(names) if d.path not in have]
    return _tar_bytes(entries)


_BUSYBOX_CACHE: dict[tuple[str, int, int], bytes] = {}


def busybox_layer_tar(busybox: str | os.PathLike[str] = BUSYBOX_PATH) -> bytes:
    """Uncompressed tar: /bin/busybox, /bin/<applet> -> busybox, /etc/{passwd,group}, dirs."""
    st = os.stat(busybox)
    key = (os.fspath(busybox), st.st_size, int(st.st_mtime))
    cached = _BUSYBOX_CACHE.get(key)
    if cached is not None:
        return cached
    data = Path(busybox).read_bytes()
    extra = [
        _Entry("bin/busybox", "file", data=data, mode=0o755),
        *(_Entry(f"bin/{a}", "symlink", target="busybox") for a in BUSYBOX_APPLETS),
        _Entry("tmp", "dir", mode=0o1777),
        _Entry("root", "dir", mode=0o700),
    ]
    tar = _files_layer(
        {
            "etc/passwd": (
                "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
            ),
            "etc/group": "root:x:0:\nnogroup:x:65534:\n",
        },
        extra,
    )
    _BUSYBOX_CACHE[key] = tar
    return tar


# --------------------------------------------------------------------------------------------
# Builders


def build_image(
    *,
    platform: Platform | str | None = None,
    media: MediaTypes | Literal["oci", "docker"] = "oci",
    runnable: bool | None = None,
    variant_content: str | None = None,
    files: Mapping[str, bytes | str] | None = None,
    cmd: Sequence[str] | None = ("/bin/sh",),
    entrypoint: Sequence[str] | None = None,
    env: Sequence[str] = (f"PATH={DEFAULT_PATH}",),
    labels: Mapping[str, str] | None = None,
    working_dir: str | None = None,
    user: str | None = None,
    exposed_ports: Sequence[str] = (),
    volumes: Sequence[str] = (),
    created: str | None = CREATED,
    busybox: str | os.PathLike[str] = BUSYBOX_PATH,
) -> ImageSpec:
    """Build one single-platform image.

    * ``runnable`` (default: platform is the host's): the first layer is busybox; otherwise it
      is a tiny synthetic layer holding ``/platform.txt``.
    * ``variant_content``: adds a small extra layer with ``/variant.txt`` holding that text,
      giving a distinct image (new config/manifest digests) that shares the base layer.
    * ``files``: adds another extra layer with these ``{path: content}`` files.
    """
    plat = HOST_PLATFORM if platform is None else platform
    if isinstance(plat, str):
        plat = Platform.parse(plat)
    mt = _media(media)
    if runnable is None:
        runnable = plat == HOST_PLATFORM
    raw_layers: list[bytes] = []
    if runnable:
        raw_layers.append(busybox_layer_tar(busybox))
    else:
        raw_layers.append(_files_layer({"platform.txt": f"{plat}\n"}))
    if variant_content is not None:
        raw_layers.append(_files_layer({"variant.txt": variant_content}))
    if files:
        raw_layers.append(_files_layer(files))

    diff_ids = tuple(sha256_digest(t) for t in raw_layers)
    layers = tuple(Blob(mt.layer_gzip, _gzip(t)) for t in raw_layers)

    cfg: dict[str, Any] = {"Env": list(env)}
    if cmd is not None:
        cfg["Cmd"] = list(cmd)
    if entrypoint is not None:
        cfg["Entrypoint"] = list(entrypoint)
    if labels:
        cfg["Labels"] = dict(labels)
    if working_dir:
        cfg["WorkingDir"] = working_dir
    if user:
        cfg["User"] = user
    if exposed_ports:
        cfg["ExposedPorts"] = {p: {} for p in exposed_ports}
    if volumes:
        cfg["Volumes"] = {v: {} for v in volumes}
    dated = {"created": created} if created is not None else {}  # None: no "created" at all
    history = [
        {**dated, "created_by": f"integration.images layer {i}"} for i in range(len(raw_layers))
    ]
    config_obj: dict[str, Any] = {
        **dated,
        "architecture": plat.architecture,
        "os": plat.os,
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": history,
    }
    if plat.variant:
        config_obj["variant"] = plat.variant
    config = Blob(mt.config, canonical_json(config_obj))

    manifest_obj: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.manifest,
        "config": config.descriptor(),
        "layers": [b.descriptor() for b in layers],
    }
    manifest = Blob(mt.manifest, canonical_json(manifest_obj))
    return ImageSpec(
        platform=plat,
        media=mt,
        manifest=manifest,
        config=config,
        layers=layers,
        diff_ids=diff_ids,
        runnable=runnable,
    )


def default_index_platforms() -> tuple[Platform, ...]:
    """host (runnable), the other of amd64/arm64, and linux/arm/v7 (both synthetic)."""
    plats = [HOST_PLATFORM, other_platform(), Platform("linux", "arm", "v7")]
    out: list[Platform] = []
    for p in plats:
        if p not in out:
            out.append(p)
    return tuple(out)


def build_index(
    *,
    platforms: Sequence[Platform | str] | None = None,
    media: MediaTypes | Literal["oci", "docker"] = "oci",
    variant_content: str | None = None,
    **image_kwargs: Any,
) -> IndexSpec:
    """A multi-platform index.  The host platform (if listed) gets the runnable busybox image,
    the others small synthetic ones.  ``variant_content`` applies to every platform."""
    mt = _media(media)
    plats = [
        Platform.parse(p) if isinstance(p, str) else p
        for p in (platforms or default_index_platforms())
    ]
    manifests = tuple(
        build_image(platform=p, media=mt, variant_content=variant_content, **image_kwargs)
        for p in plats
    )
    index_obj: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.index,
        "manifests": [m.manifest.descriptor(platform=m.platform) for m in manifests],
    }
    return IndexSpec(media=mt, index=Blob(mt.index, canonical_json(index_obj)), manifests=manifests)


# --------------------------------------------------------------------------------------------
# Archives


def split_tag(name: str) -> str:
    """The "object" part of a reference: tag (``latest`` if none) or the digest."""
    if "@" in name:
        return name.split("@", 1)[1]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


def familiar_name(name: str) -> str:
    """``docker.io/library/busybox:latest`` -> ``busybox:latest`` (for manifest.json)."""
    for prefix in ("docker.io/library/", "docker.io/"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


@dataclass(frozen=True)
class Archive:
    path: Path
    names: tuple[str, ...]
    image: AnyImage

    @property
    def name(self) -> str:
        return self.names[0]

    @property
    def digest(self) -> str:
        """Digest of what the archive's index.json entry targets (manifest or index)."""
        return self.image.digest

    @property
    def media_type(self) -> str:
        return self.image.media_type

    @property
    def single(self) -> ImageSpec:
        """The image, which must be a single-platform one."""
        if not isinstance(self.image, ImageSpec):
            raise AssertionError(f"{self.path} holds a multi-platform index")
        return self.image

    @property
    def index(self) -> IndexSpec:
        """The image, which must be a multi-platform index."""
        if not isinstance(self.image, IndexSpec):
            raise AssertionError(f"{self.path} holds a single-platform image")
        return self.image


def _layout_members(
    images: Sequence[tuple[AnyImage, Sequence[str]]],
    docker_manifest_json: bool,
    image_name_annotation: bool = True,
) -> dict[str, bytes]:
    members: dict[str, bytes] = {"oci-layout": canonical_json({"imageLayoutVersion": "1.0.0"})}
    entries: list[dict[str, Any]] = []
    docker_manifest: list[dict[str, Any]] = []
    for img, names in images:
        for b in img.blobs():
            members[f"blobs/sha256/{b.hex}"] = b.data
        target = img.index if isinstance(img, IndexSpec) else img.manifest
        plat = img.platform if isinstance(img, ImageSpec) else None
        if names:
            for n in names:
                ann = {ANNOTATION_REF_NAME: split_tag(n)}
                if image_name_annotation:
                    ann[ANNOTATION_IMAGE_NAME] = n
                entries.append(target.descriptor(platform=plat, annotations=ann))
        else:
            entries.append(target.descriptor(platform=plat))
        if docker_manifest_json:
            single = img.host if isinstance(img, IndexSpec) else img
            docker_manifest.append(
                {
                    "Config": f"blobs/sha256/{single.config.hex}",
                    "RepoTags": [familiar_name(n) for n in names],
                    "Layers": [f"blobs/sha256/{b.hex}" for b in single.layers],
                }
            )
    members["index.json"] = canonical_json(
        {"schemaVersion": 2, "mediaType": OCI_LAYOUT_INDEX, "manifests": entries}
    )
    if docker_manifest_json:
        members["manifest.json"] = canonical_json(docker_manifest)
    return members


def _normalize_images(
    image: AnyImage | Sequence[tuple[AnyImage, Sequence[str] | str]],
    name: str | Sequence[str] | None,
) -> list[tuple[AnyImage, tuple[str, ...]]]:
    if isinstance(image, ImageSpec | IndexSpec):
        if name is None:
            names: tuple[str, ...] = ()
        elif isinstance(name, str):
            names = (name,)
        else:
            names = tuple(name)
        return [(image, names)]
    out: list[tuple[AnyImage, tuple[str, ...]]] = []
    for img, n in image:
        out.append((img, (n,) if isinstance(n, str) else tuple(n)))
    return out


def write_oci_archive(
    path: str | os.PathLike[str],
    image: AnyImage | Sequence[tuple[AnyImage, Sequence[str] | str]],
    name: str | Sequence[str] | None = None,
    *,
    docker_manifest_json: bool = False,
    image_name_annotation: bool = True,
) -> Archive:
    """Write an OCI image-layout tar (like ``ctr images export``).

    ``image`` is one image/index with ``name`` (a name, several names, or None for an unnamed
    entry), or a list of ``(image, names)`` pairs for a multi-image archive.  Each name becomes
    one index.json entry with ``io.containerd.image.name`` and
    ``org.opencontainers.image.ref.name`` annotations.  ``docker_manifest_json`` adds a
    docker-compatible ``manifest.json`` too (ignored by containerd when ``oci-layout`` exists).
    ``image_name_annotation=False`` leaves out ``io.containerd.image.name`` (only the tag in
    ``org.opencontainers.image.ref.name`` remains, as in plain OCI layouts).
    """
    imgs = _normalize_images(image, name)
    members = _layout_members(imgs, docker_manifest_json, image_name_annotation)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".partial")
    with tarfile.open(tmp, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for d in ("blobs", "blobs/sha256"):
            ti = tarfile.TarInfo(d)
            ti.type = tarfile.DIRTYPE
            ti.mode = 0o755
            ti.mtime = _MTIME
            tf.addfile(ti)
        for member, data in sorted(members.items()):
            ti = tarfile.TarInfo(member)
            ti.size = len(data)
            ti.mode = 0o444 if member.startswith("blobs/") else 0o644
            ti.mtime = _MTIME
            tf.addfile(ti, io.BytesIO(data))
    os.replace(tmp, p)
    first = imgs[0]
    return Archive(path=p, names=first[1], image=first[0])


def write_oci_layout(
    directory: str | os.PathLike[str],
    image: AnyImage | Sequence[tuple[AnyImage, Sequence[str] | str]],
    name: str | Sequence[str] | None = None,
) -> Path:
    """Same content as :func:`write_oci_archive` but as a directory (skopeo ``oci:DIR``)."""
    d = Path(directory)
    for member, data in _layout_members(_normalize_images(image, name), False).items():
        f = d / member
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(data)
    return d


# --------------------------------------------------------------------------------------------
# Importing into containerd with ctr


class CtrRunner(Protocol):
    """What :func:`import_into` needs: ``testbed.Containerd`` fits."""

    def ctr(
        self, *args: str, namespace: str = ..., check: bool = ..., timeout: float = ...
    ) -> subprocess.CompletedProcess[str]: ...


def archive_names(path: str | os.PathLike[str]) -> list[str]:
    """The ``io.containerd.image.name`` annotations of an OCI archive's index.json."""
    with tarfile.open(path) as tf:
        f = tf.extractfile("index.json")
        if f is None:
            return []
        idx = json.load(f)
    names = []
    for m in idx.get("manifests", []):
        n = (m.get("annotations") or {}).get(ANNOTATION_IMAGE_NAME)
        if n:
            names.append(n)
    return names


def _image_names(containerd: CtrRunner, namespace: str) -> set[str]:
    out = containerd.ctr("images", "ls", "-q", namespace=namespace).stdout
    return {line.strip() for line in out.splitlines() if line.strip()}


def import_into(
    containerd: CtrRunner,
    archive: Archive | str | os.PathLike[str],
    name: str | None = None,
    *,
    namespace: str = "default",
    all_platforms: bool | None = None,
    platform: str | None = None,
    no_unpack: bool = False,
    digests: bool = False,
    index_name: str | None = None,
    base_name: str | None = None,
    timeout: float = 120.0,
) -> list[str]:
    """``ctr -n NAMESPACE images import`` an archive; returns the image names now present
    that the import created or refreshed (sorted).

    ctr 1.6 semantics (checked by test_testbed.py):
    * a record is made per index.json entry, named by its ``io.containerd.image.name``
      annotation **verbatim**; it targets that entry's descriptor (manifest, or the index
      for a multi-platform archive);
    * an entry with only ``org.opencontainers.image.ref.name=TAG`` becomes
      ``import-YYYY-MM-DD:TAG`` (no ``--base-name``); an entry with neither is not named
      unless ``digests`` (then ``import-YYYY-MM-DD@sha256:…``);
    * without ``--all-platforms`` only host-platform content is kept (the rest is garbage
      collected) and unpacked; ``all_platforms`` defaults to True for an :class:`IndexSpec`.
      With it, every platform's content is kept, and unpacked: the host's alone by
      containerd 1.x's ctr, every platform by 2.x's (its import goes through the transfer
      service);
    * in ``k8s.io`` the CRI plugin adopts the image: it labels it
      ``io.cri-containerd.image=managed`` and adds a ``sha256:<config digest>`` record
      (asynchronously, so it may or may not be in the returned list yet);
    * ``name``: if it is not one of the archive's names, the first archive name is re-tagged
      to it afterwards with ``ctr images tag --force``.
    """
    path = archive.path if isinstance(archive, Archive) else Path(archive)
    expected = archive_names(path)
    if all_platforms is None:
        all_platforms = isinstance(archive, Archive) and isinstance(archive.image, IndexSpec)
    args = ["images", "import"]
    if all_platforms:
        args.append("--all-platforms")
    if platform:
        args += ["--platform", platform]
    if no_unpack:
        args.append("--no-unpack")
    if digests:
        args.append("--digests")
    if index_name:
        args += ["--index-name", index_name]
        expected.append(index_name)
    if base_name:
        args += ["--base-name", base_name]
    args.append(os.fspath(path))
    before = _image_names(containerd, namespace)
    containerd.ctr(*args, namespace=namespace, timeout=timeout)
    if name is not None and name not in expected:
        if not expected:
            raise ValueError(f"{path}: archive has no named entry to tag as {name!r}")
        containerd.ctr("images", "tag", "--force", expected[0], name, namespace=namespace)
        expected.append(name)
    after = _image_names(containerd, namespace)
    missing = [n for n in expected if n not in after and base_name is None]
    if missing:
        raise RuntimeError(
            f"import of {path} did not create {missing}; images now: {sorted(after)}"
        )
    return sorted((set(expected) & after) | (after - before))
