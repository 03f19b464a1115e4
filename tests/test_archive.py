"""The pure parts of archives: naming, tar tree checks, layouts, the deterministic writer."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Iterator
from datetime import date
from pathlib import Path

import pytest

from pyctl.archive.layout import Layout, manifest_json, read_layout
from pyctl.archive.names import Naming, docker_repo_tag, ref_object, repo_tag
from pyctl.archive.reader import FileArchive
from pyctl.archive.tarball import (
    ArchiveError,
    Tree,
    clean_path,
    compression_of,
    link_target,
    open_stream,
    walk_stream,
)
from pyctl.archive.writer import ArchiveWriter, verified
from pyctl.copy import NoProgress, PlatformFilter, plan
from pyctl.errors import InvalidReferenceError
from pyctl.oci import (
    ANNOTATION_IMAGE_NAME as NAME,
)
from pyctl.oci import (
    ANNOTATION_REF_NAME as REF,
)
from pyctl.oci import (
    DOCKER_LAYER,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    Descriptor,
    Platform,
    sha256_digest,
)

DAY = date(2024, 5, 1)
D1 = "sha256:" + "1" * 64


# names ------------------------------------------------------------------------------------------


def test_names_follow_ctr_rules_normalized() -> None:
    n = Naming.create(today=DAY)
    assert n.prefix == "import-2024-05-01"
    # io.containerd.image.name first, whatever ref.name says
    assert n.names({NAME: "docker.io/library/busybox:1", REF: "x"}, D1) == [
        "docker.io/library/busybox:1"
    ]
    assert n.names({NAME: "busybox"}, D1) == ["docker.io/library/busybox:latest"]
    # ref.name: a tag gets the prefix, a full reference is kept
    assert n.names({REF: "1.0"}, D1) == ["docker.io/library/import-2024-05-01:1.0"]
    assert n.names({REF: "example.com/app:2"}, D1) == ["example.com/app:2"]
    # no name at all: nothing (ctr imports it unnamed)
    assert n.names({}, D1) == []


def test_base_name_names_tags_and_filters_full_references() -> None:
    n = Naming.create("example.com/team/app", today=DAY)
    assert n.names({REF: "1"}, D1) == ["example.com/team/app:1"]
    assert n.names({REF: "example.com/team/app:2"}, D1) == ["example.com/team/app:2"]
    assert n.names({REF: "example.com/team/app/sub:3"}, D1) == ["example.com/team/app/sub:3"]
    assert n.names({REF: "example.com/team/other:3"}, D1) == []
    assert n.names({REF: "example.com/team/application:3"}, D1) == []
    # the image-name annotation is not filtered (as in ctr)
    assert n.names({NAME: "docker.io/library/x:1"}, D1) == ["docker.io/library/x:1"]
    assert Naming.create("busybox").prefix == "docker.io/library/busybox"


@pytest.mark.parametrize("bad", ["app:1", "app@" + D1, "UPPER", "a b"])
def test_base_name_must_be_a_repository(bad: str) -> None:
    with pytest.raises(InvalidReferenceError, match="--base-name"):
        Naming.create(bad)


def test_digest_names() -> None:
    n = Naming.create(digests=True, today=DAY)
    assert n.names({NAME: "docker.io/library/busybox:1"}, D1) == [
        "docker.io/library/busybox:1",
        f"docker.io/library/busybox@{D1}",
    ]
    assert n.names({}, D1) == [f"docker.io/library/import-2024-05-01@{D1}"]
    based = Naming.create("foo/bar", digests=True)
    assert based.names({REF: "latest"}, D1) == [
        "docker.io/foo/bar:latest",
        f"docker.io/foo/bar@{D1}",
    ]
    load = Naming.create(name_unnamed=True, today=DAY)
    assert load.names({}, D1) == [f"docker.io/library/import-2024-05-01@{D1}"]
    assert load.names({REF: "v1"}, D1) == ["docker.io/library/import-2024-05-01:v1"]


def test_bad_names_in_archives_are_errors() -> None:
    with pytest.raises(InvalidReferenceError, match="the archive names an image 'Bad Name'"):
        Naming.create().names({NAME: "Bad Name"}, D1)
    # the CRI plugin's sha256:<config> names stay as they are
    assert Naming.create().names({NAME: D1}, D1) == [D1]


def test_docker_and_export_name_forms() -> None:
    assert repo_tag("busybox:1") == "docker.io/library/busybox:1"
    assert repo_tag("example.com/a/b") == "example.com/a/b:latest"
    assert ref_object("docker.io/library/busybox:1") == "1"
    assert ref_object(f"example.com/app@{D1}") == D1
    assert ref_object(D1) == D1
    assert docker_repo_tag("docker.io/library/busybox:1") == "busybox:1"
    assert docker_repo_tag("example.com/app:2") == "example.com/app:2"
    assert docker_repo_tag(f"example.com/app@{D1}") is None
    assert docker_repo_tag(D1) is None


# tar tree checks --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "clean"),
    [("a", "a"), ("./a//b/", "a/b"), ("./", ""), ("blobs/sha256/x", "blobs/sha256/x")],
)
def test_clean_path(name: str, clean: str) -> None:
    assert clean_path(name) == clean


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("/etc/passwd", "absolute"),
        ("../x", r"'\.\.'"),
        ("a/../../x", r"'\.\.'"),
        ("a/../b", "'..'"),
    ],
)
def test_clean_path_refuses(name: str, why: str) -> None:
    with pytest.raises(ArchiveError, match=why):
        clean_path(name)


def test_link_targets() -> None:
    assert link_target("d/layer.tar", "../x.tar", symbolic=True) == "x.tar"
    assert link_target("d/e/f", "../g", symbolic=True) == "d/g"
    assert link_target("a", "b/c", symbolic=False) == "b/c"
    for path, target, symbolic in [
        ("d/layer.tar", "../../x", True),
        ("a", "/etc/shadow", True),
        ("a", "..", True),
        ("a", "../etc", False),
        ("a", "", True),
    ]:
        with pytest.raises(ArchiveError, match=r"outside the archive|'\.\.' in its path"):
            link_target(path, target, symbolic=symbolic)


def _tar(entries: Iterable[tarfile.TarInfo | tuple[str, bytes]], *, end: bool = True) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            if isinstance(e, tuple):
                info = tarfile.TarInfo(e[0])
                info.size = len(e[1])
                tf.addfile(info, io.BytesIO(e[1]))
            else:
                tf.addfile(e)
    data = buf.getvalue()
    if not end:
        data = data[: -(2 * 512)].rstrip(b"\0")
        data += b"\0" * (-len(data) % 512)
    return data


def _info(name: str, kind: bytes, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


def _scan(data: bytes, tmp_path: Path) -> FileArchive:
    path = tmp_path / "a.tar"
    path.write_bytes(data)
    f = path.open("rb")
    _open_files.append(f)  # the archive reads it by offset later
    return FileArchive(f)


_open_files: list[io.BufferedReader] = []


def _walk(data: bytes) -> list[tuple[str, str, bytes]]:
    """What a streamed read sees (entries go into a Tree, as StreamArchive does)."""
    tree = Tree()
    out = []
    for e in walk_stream(io.BytesIO(data)):
        tree.add(e.kind, e.path, e.link, e.size)
        out.append((e.kind, e.path, b"".join(e.chunks()) if e.kind == "file" else b""))
    tree.check_links()
    return out


BAD_ENTRIES = [
    (("/abs", b"x"), "absolute path"),
    (("../up", b"x"), "'..'"),
    ((_info("dev", tarfile.CHRTYPE)), "character device"),
    ((_info("blk", tarfile.BLKTYPE)), "block device"),
    ((_info("fifo", tarfile.FIFOTYPE)), "FIFO"),
    ((_info("l", tarfile.SYMTYPE, "/etc/passwd")), "outside the archive"),
    ((_info("d/l", tarfile.SYMTYPE, "../../x")), "outside the archive"),
    ((_info("h", tarfile.LNKTYPE, "../x")), "outside the archive|'..'"),
]


@pytest.mark.parametrize(("entry", "why"), BAD_ENTRIES)
def test_unsafe_entries_are_refused_both_ways(
    entry: tarfile.TarInfo | tuple[str, bytes], why: str, tmp_path: Path
) -> None:
    data = _tar([("index.json", b"{}"), entry])
    with pytest.raises(ArchiveError, match=f"unsafe entry .*({why})"):
        _scan(data, tmp_path)
    with pytest.raises(ArchiveError, match=f"unsafe entry .*({why})"):
        _walk(data)


def test_links_inside_the_tree_are_followed(tmp_path: Path) -> None:
    data = _tar(
        [
            ("abc.tar", b"layer"),
            _info("d/layer.tar", tarfile.SYMTYPE, "../abc.tar"),
            _info("e/layer.tar", tarfile.LNKTYPE, "d/layer.tar"),
        ]
    )
    archive = _scan(data, tmp_path)
    assert archive.small("d/layer.tar") == b"layer"
    assert archive.small("e/layer.tar") == b"layer"
    assert archive.small("nope") is None
    dangling = _tar([("a", b"1"), _info("b", tarfile.SYMTYPE, "c")])
    with pytest.raises(ArchiveError, match="link 'b' points to 'c', not a file"):
        _scan(dangling, tmp_path)


def test_duplicate_files_are_refused(tmp_path: Path) -> None:
    data = _tar([("index.json", b"{}"), ("./index.json", b"[]")])
    with pytest.raises(ArchiveError, match=r"duplicate entry 'index\.json'"):
        _scan(data, tmp_path)
    with pytest.raises(ArchiveError, match="duplicate entry"):
        _walk(data)


def test_truncated_archives(tmp_path: Path) -> None:
    data = _tar([("a", b"x" * 3000), ("b", b"y" * 3000)])
    for cut in (700, 2000, 3584 + 100, 3584 + 700, 7168 - 10):  # headers and data cut
        part = data[:cut]
        with pytest.raises(ArchiveError, match=r"^unexpected end of archive$"):
            _scan(part, tmp_path)
        with pytest.raises(ArchiveError, match=r"^unexpected end of archive$"):
            _walk(part)
    # cut exactly between entries, end blocks missing: a complete tar as far as it goes
    no_end = _tar([("a", b"x" * 512)], end=False)
    assert _walk(no_end) == [("file", "a", b"x" * 512)]
    assert _scan(no_end, tmp_path).small("a") == b"x" * 512


def test_garbage_is_not_an_archive(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="not a valid tar archive"):
        _scan(b"hello" * 300, tmp_path)
    with pytest.raises(ArchiveError, match="not a valid tar archive"):
        _walk(b"hello" * 300)
    with pytest.raises(ArchiveError, match="not a valid tar archive"):
        _walk(_tar([("a", b"1")], end=False) + b"\x01" * 512)


def test_compression_magic_and_streams() -> None:
    data = _tar([("a", b"hello")])
    assert compression_of(data[:8]) == "none"
    assert compression_of(gzip.compress(data)[:8]) == "gzip"
    import zstandard

    zst = zstandard.ZstdCompressor().compress(data)
    assert compression_of(zst[:8]) == "zstd"
    with pytest.raises(ArchiveError, match="bzip2-compressed archives are not supported"):
        compression_of(b"BZh91AY")
    noise = b"".join(hashlib.sha256(bytes([i, j])).digest() for i in range(8) for j in range(256))
    big = _tar([("a", b"hello"), ("b", noise)])
    for packed, kind in (
        (gzip.compress(big), "gzip"),
        (zstandard.ZstdCompressor().compress(big), "zstd"),
    ):
        assert _walk(open_stream(io.BytesIO(packed), kind).read())[0] == ("file", "a", b"hello")
        entries = walk_stream(open_stream(io.BytesIO(packed[: len(packed) // 2]), kind))
        with pytest.raises(ArchiveError, match="unexpected end of archive"):
            [b"".join(e.chunks()) for e in entries]


def test_corrupt_compressed_data_is_an_archive_error_never_a_crash() -> None:
    noise = b"".join(hashlib.sha256(bytes([i])).digest() for i in range(256)) * 8
    data = _tar([("a", noise)])
    for kind, packed in (("gzip", gzip.compress(data)), ("zstd", _zstd(data))):
        for pos in range(20, len(packed), max(1, len(packed) // 40)):
            broken = bytearray(packed)
            broken[pos] ^= 0xFF
            entries = walk_stream(open_stream(io.BytesIO(bytes(broken)), kind))
            try:
                [b"".join(e.chunks()) for e in entries]
            except ArchiveError:
                continue
            # gzip has a CRC; zstd frames carry no checksum by default, so a flipped byte
            # in a literal block goes unnoticed here (the blob digests catch it later)
            assert kind == "zstd", pos


def _zstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor().compress(data)


def test_verified_stream() -> None:
    data = b"abc" * 1000
    desc = Descriptor("x", sha256_digest(data), len(data))
    assert b"".join(verified([data[:10], data[10:]], desc, "bad")) == data
    got: list[bytes] = []
    with pytest.raises(ArchiveError, match="bad"):
        for chunk in verified([data[:10], b"x" + data[11:]], desc, "bad"):
            got.append(chunk)
    assert got == [data[:10]]  # the last piece is held back until the digest is known
    with pytest.raises(ArchiveError, match="bad"):
        list(verified([data, b"more"], desc, "bad"))


# layouts ----------------------------------------------------------------------------------------


class MemoryFiles:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def size(self, path: str) -> int | None:
        return len(self.files[path]) if path in self.files else None

    def small(self, path: str, limit: int = 1 << 22) -> bytes | None:
        return self.files.get(path)

    def head(self, path: str) -> bytes:
        return self.files[path][:8]

    def digest(self, path: str) -> str:
        return sha256_digest(self.files[path])


def _config(diff_ids: list[str], arch: str = "arm64") -> bytes:
    doc = {"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    return json.dumps(doc).encode()


def test_docker_save_layout_becomes_docker_manifests() -> None:
    raw = b"raw layer"
    packed = gzip.compress(b"inner", mtime=0)
    config = _config([sha256_digest(raw), sha256_digest(b"inner")])
    files = MemoryFiles(
        {
            "manifest.json": json.dumps(
                [
                    {
                        "Config": "cfg.json",
                        "RepoTags": ["app:1", "example.com/x:2"],
                        "Layers": ["l1/layer.tar", "./l2.tar"],
                    },
                    {"Config": "cfg.json", "RepoTags": None, "Layers": ["l1/layer.tar", "l2.tar"]},
                ]
            ).encode(),
            "cfg.json": config,
            "l1/layer.tar": raw,
            "l2.tar": packed,
        }
    )
    layout = read_layout(files)
    assert layout.kind == "docker"
    names = [e.annotations.get(NAME) for e in layout.entries]
    assert names == ["docker.io/library/app:1", "example.com/x:2", None]
    assert [e.annotations.get(REF) for e in layout.entries] == ["1", "2", None]
    entry = layout.entries[0]
    assert entry.media_type == DOCKER_MANIFEST
    assert entry.platform == Platform("linux", "arm64")
    manifest = json.loads(layout.documents[entry.digest])
    assert list(manifest) == ["schemaVersion", "mediaType", "config", "layers"]
    assert manifest["config"]["digest"] == sha256_digest(config)
    assert [x["mediaType"] for x in manifest["layers"]] == [DOCKER_LAYER, DOCKER_LAYER_GZIP]
    assert [x["digest"] for x in manifest["layers"]] == [sha256_digest(raw), sha256_digest(packed)]
    assert layout.path_of(sha256_digest(packed)) == "l2.tar"
    assert layout.path_of(D1) == "blobs/sha256/" + "1" * 64
    assert sha256_digest(layout.documents[entry.digest]) == entry.digest


def test_manifest_json_is_compact_in_go_field_order() -> None:
    c = Descriptor("application/vnd.docker.container.image.v1+json", D1, 3)
    text = manifest_json(c, [Descriptor(DOCKER_LAYER, D1, 5)]).decode()
    assert text == (
        '{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",'
        '"config":{"mediaType":"application/vnd.docker.container.image.v1+json",'
        f'"digest":"{D1}","size":3}},"layers":[{{"mediaType":"{DOCKER_LAYER}",'
        f'"digest":"{D1}","size":5}}]}}'
    )


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, "not an image archive"),
        ({"oci-layout": b'{"imageLayoutVersion":"2.0.0"}'}, "unsupported OCI layout version"),
        ({"oci-layout": b'{"imageLayoutVersion":"1.0.0"}'}, "has no index.json"),
        ({"manifest.json": b"{}"}, "not a list of images"),
        ({"manifest.json": b"[{}]"}, "without Config or Layers"),
        (
            {"manifest.json": b'[{"Config":"c.json","Layers":[]}]'},
            "names config c.json, not in the archive",
        ),
        (
            {"manifest.json": b'[{"Config":"c.json","Layers":["x.tar"]}]', "c.json": b"{}"},
            "names layer x.tar, not in the archive",
        ),
        ({"manifest.json": b'[{"Config":"../c.json","Layers":[]}]'}, "unsafe entry"),
    ],
)
def test_bad_layouts(files: dict[str, bytes], message: str) -> None:
    with pytest.raises(ArchiveError, match=message):
        read_layout(MemoryFiles(files))


def test_oci_layout_wins_over_manifest_json() -> None:
    index = {"schemaVersion": 2, "manifests": [{"mediaType": "m", "digest": D1, "size": 1}]}
    layout = read_layout(
        MemoryFiles(
            {
                "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
                "index.json": json.dumps(index).encode(),
                "manifest.json": b"[]",
            }
        )
    )
    assert layout.kind == "oci" and [e.digest for e in layout.entries] == [D1]


# the writer -------------------------------------------------------------------------------------


class MemorySource:
    def __init__(self, blobs: dict[str, bytes]) -> None:
        self.blobs = blobs

    def read(self, desc: Descriptor) -> bytes:
        return self.blobs[desc.digest]

    def open(self, desc: Descriptor, offset: int) -> Iterator[bytes]:
        data = self.blobs[desc.digest][offset:]
        yield data[:7]
        yield data[7:]


def _image(tag: str) -> tuple[MemorySource, Descriptor]:
    layers = [gzip.compress(f"{tag}-{i}".encode() * 100, mtime=0) for i in range(3)]
    config = _config([sha256_digest(x) for x in layers], arch="amd64")
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256_digest(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": sha256_digest(x),
                    "size": len(x),
                }
                for x in layers
            ],
        }
    ).encode()
    blobs = {sha256_digest(b): b for b in [*layers, config, manifest]}
    root = Descriptor(
        "application/vnd.oci.image.manifest.v1+json", sha256_digest(manifest), len(manifest)
    )
    return MemorySource(blobs), root


def _export(images: list[tuple[str, MemorySource, Descriptor]], **kw: bool) -> bytes:
    from pyctl.copy import copy

    writer = ArchiveWriter(**kw)
    out = io.BytesIO()
    merged = MemorySource({})
    for name, source, root in images:
        merged.blobs.update(source.blobs)
        the_plan = plan(source, root, PlatformFilter(all=True))
        copy(source, writer, the_plan, concurrency=1)
        writer.add_image(name, root, the_plan, {"containerd.io/distribution.source.x": "r"}, [])
    writer.finish(out, merged, NoProgress())
    return out.getvalue()


def test_writer_is_deterministic_sorted_and_readable() -> None:
    src_a, root_a = _image("a")
    src_b, root_b = _image("b")
    images = [
        ("docker.io/library/a:1", src_a, root_a),
        ("example.com/b:2", src_b, root_b),
        ("docker.io/library/a:latest", src_a, root_a),
    ]
    first = _export(images)
    assert first == _export(images)
    with tarfile.open(fileobj=io.BytesIO(first)) as tf:
        members = tf.getmembers()
        names = [m.name for m in members]
        assert names[:2] == ["blobs", "blobs/sha256"]
        assert names[2:] == sorted(names[2:]) and names[-3:] == [
            "index.json",
            "manifest.json",
            "oci-layout",
        ]
        assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in members)
        assert {m.mode for m in members if m.isfile()} == {0o444}
        assert len(names) == len(set(names)) == 2 + 2 * 5 + 3
        for m in members:
            if m.name.startswith("blobs/sha256/"):
                data = tf.extractfile(m).read()  # type: ignore[union-attr]
                assert hashlib.sha256(data).hexdigest() == m.name.rsplit("/", 1)[1]
        index = json.loads(tf.extractfile("index.json").read())  # type: ignore[union-attr]
        docker = json.loads(tf.extractfile("manifest.json").read())  # type: ignore[union-attr]
        assert json.loads(tf.extractfile("oci-layout").read()) == {"imageLayoutVersion": "1.0.0"}  # type: ignore[union-attr]
    entries = index["manifests"]
    assert [e["digest"] for e in entries] == [root_a.digest, root_b.digest, root_a.digest]
    assert entries[0]["annotations"] == {
        "containerd.io/distribution.source.x": "r",
        NAME: "docker.io/library/a:1",
        REF: "1",
    }
    assert [d["RepoTags"] for d in docker] == [["a:1", "a:latest"], ["example.com/b:2"]]
    assert docker[0]["Config"].startswith("blobs/sha256/") and len(docker[0]["Layers"]) == 3
    skipped = _export(images, docker_manifest=False)
    with tarfile.open(fileobj=io.BytesIO(skipped)) as tf:
        assert "manifest.json" not in tf.getnames()


def test_writer_refuses_content_that_does_not_match() -> None:
    src, root = _image("a")
    layer = next(d for d, data in src.blobs.items() if data.startswith(b"\x1f\x8b"))
    src.blobs[layer] = src.blobs[layer][:-1] + b"!"
    with pytest.raises(ArchiveError, match=f"content {layer} in containerd does not match"):
        _export([("a:1", src, root)])


def test_layout_round_trip_through_the_reader(tmp_path: Path) -> None:
    src, root = _image("a")
    data = _export([("docker.io/library/a:1", src, root)])
    archive = _scan(data, tmp_path)
    layout = read_layout(archive)
    archive.layout = layout
    assert isinstance(layout, Layout) and layout.kind == "oci"
    (entry,) = layout.entries
    the_plan = plan(archive, entry, PlatformFilter(all=True))
    for layer in the_plan.layers():
        assert b"".join(archive.open(layer, 0)) == src.blobs[layer.digest]
        assert b"".join(archive.open(layer, 5)) == src.blobs[layer.digest][5:]
