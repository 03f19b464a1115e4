"""`pyctl import / load / export / save` against a real containerd, cross-checked with ctr (which
imports what pyctl exports and exports what pyctl imports) and skopeo (which reads pyctl's
archives and writes the docker archives pyctl loads): exit codes, stdout, the one-line error,
and what containerd holds afterwards (records, content, snapshots, leases)."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import IO

import pytest

from integration import images
from integration.conftest import BUSYBOX_NAME, ImageFactory, PyctlRunner
from integration.helpers import assert_error, unique_id
from integration.images import Archive
from integration.registry_helpers import (
    SNAPSHOT_LABEL_PREFIX,
    Skopeo,
    assert_success,
    chain_id,
    content_labels,
    ctr_images,
    leases,
    snapshot_keys,
)
from integration.testbed import Containerd

HOST = str(images.HOST_PLATFORM)
OTHER = str(images.other_platform())


@dataclass(frozen=True)
class Bed:
    """What every test here uses: containerd, a namespace (more on demand), pyctl, a tmp dir."""

    containerd: Containerd
    ns: str
    pyctl: PyctlRunner
    tmp: Path
    more: Callable[[str], str]

    def run(
        self,
        *args: str,
        namespace: str,
        stdin: IO[bytes] | int | None = None,
        stdout: IO[bytes] | int | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """pyctl with binary stdin/stdout (archives through pipes)."""
        return subprocess.run(
            self.pyctl.argv(*args),
            stdin=subprocess.DEVNULL if stdin is None else stdin,
            stdout=subprocess.PIPE if stdout is None else stdout,
            stderr=subprocess.PIPE,
            env=self.pyctl.env(namespace),
            timeout=120,
        )

    def assert_runs(self, ns: str, name: str) -> None:
        run = self.containerd.ctr(
            "run", "--rm", name, unique_id("archive"), "echo", "hello", namespace=ns
        )
        assert run.stdout == "hello\n"

    def assert_nothing_registered(self, ns: str) -> None:
        assert self.containerd.lines("images", "ls", "-q", namespace=ns) == []
        assert leases(self.containerd, ns) == []


@pytest.fixture
def bed(
    containerd: Containerd,
    namespace: str,
    pyctl: PyctlRunner,
    tmp_path: Path,
    more_namespaces: Callable[[str], str],
) -> Bed:
    return Bed(containerd, namespace, pyctl, tmp_path, more_namespaces)


def _unpack_line(name: str, digest: str) -> str:
    return f"unpacking {name} ({digest})...done"


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tf:
        return {
            m.name: tf.extractfile(m).read()  # type: ignore[union-attr]
            for m in tf.getmembers()
            if m.isfile()
        }


def _rewrite(
    src: Path,
    dst: Path,
    *,
    drop: Sequence[str] = (),
    extra: Sequence[tuple[tarfile.TarInfo, bytes]] = (),
) -> Path:
    """A copy of the tar ``src`` without the ``drop`` entries, plus ``extra`` ones at the end."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w", format=tarfile.PAX_FORMAT) as tout:
        for m in tin.getmembers():
            if m.name in drop:
                continue
            tout.addfile(m, tin.extractfile(m) if m.isfile() else None)
        for info, data in extra:
            tout.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return dst


# import -----------------------------------------------------------------------------------------


def test_ctr_export_imports_unpacks_and_runs(bed: Bed, busybox_image: Archive) -> None:
    img = busybox_image.single
    source_ns = bed.more("src")
    images.import_into(bed.containerd, busybox_image, namespace=source_ns)
    exported = bed.tmp / "ctr-export.tar"
    bed.containerd.ctr("images", "export", str(exported), BUSYBOX_NAME, namespace=source_ns)

    proc = bed.pyctl("import", str(exported), namespace=bed.ns)
    assert assert_success(proc) == [_unpack_line(BUSYBOX_NAME, img.manifest_digest)]
    assert proc.stderr == ""

    records = ctr_images(bed.containerd, bed.ns)
    assert set(records) == {BUSYBOX_NAME}
    assert records[BUSYBOX_NAME].digest == img.manifest_digest
    assert records[BUSYBOX_NAME].media_type == images.OCI.manifest
    labels = content_labels(bed.containerd, bed.ns)
    assert set(labels) == {img.manifest_digest, img.config_digest, *img.layer_digests}
    assert labels[img.manifest_digest]["containerd.io/gc.ref.content.config"] == img.config_digest
    assert labels[img.manifest_digest]["containerd.io/gc.ref.content.l.0"] == img.layer_digests[0]
    snap_label = SNAPSHOT_LABEL_PREFIX + bed.containerd.snapshotter
    assert labels[img.config_digest][snap_label] == chain_id(img.diff_ids)
    assert chain_id(img.diff_ids) in snapshot_keys(bed.containerd, bed.ns)
    assert leases(bed.containerd, bed.ns) == []
    bed.assert_runs(bed.ns, BUSYBOX_NAME)

    # `image import`, the same again: nothing new to write, the record is refreshed
    proc = bed.pyctl("image", "import", str(exported), namespace=bed.ns)
    assert assert_success(proc) == [_unpack_line(BUSYBOX_NAME, img.manifest_digest)]


def test_docker_archive_from_skopeo_loads_like_ctr_imports_it(
    bed: Bed, busybox_image: Archive
) -> None:
    sk = Skopeo(bed.tmp)
    docker_tar = bed.tmp / "docker.tar"
    sk(
        "copy",
        f"oci-archive:{busybox_image.path}",
        f"docker-archive:{docker_tar}:example.test/dock:1",
    )
    members = _members(docker_tar)
    assert "manifest.json" in members and "oci-layout" not in members

    proc = bed.pyctl("load", "-i", str(docker_tar), namespace=bed.ns)
    assert assert_success(proc) == ["Loaded image: example.test/dock:1"]
    name = "example.test/dock:1"
    record = ctr_images(bed.containerd, bed.ns)[name]
    assert record.media_type == images.DOCKER.manifest
    # ctr builds the same docker manifest from the same archive
    ctr_ns = bed.more("ctr")
    bed.containerd.ctr("images", "import", str(docker_tar), namespace=ctr_ns)
    assert ctr_images(bed.containerd, ctr_ns)[name].digest == record.digest
    bed.assert_runs(bed.ns, name)

    # the same archive through a pipe (layers hashed as they stream by)
    piped_ns = bed.more("pipe")
    with docker_tar.open("rb") as f:
        proc_b = bed.run("load", namespace=piped_ns, stdin=f)
    assert proc_b.returncode == 0, proc_b.stderr
    assert proc_b.stdout.decode() == f"Loaded image: {name}\n"
    assert ctr_images(bed.containerd, piped_ns)[name].digest == record.digest
    bed.assert_runs(piped_ns, name)


def test_gzip_zstd_and_stdin(bed: Bed, busybox_image: Archive) -> None:
    img = busybox_image.single
    gz = bed.tmp / "bb.tar.gz"
    gz.write_bytes(gzip.compress(busybox_image.path.read_bytes()))
    zst = bed.tmp / "bb.tar.zst"
    subprocess.run(["zstd", "-q", "-f", str(busybox_image.path), "-o", str(zst)], check=True)

    proc = bed.pyctl("import", str(gz), namespace=bed.ns)
    assert assert_success(proc) == [_unpack_line(BUSYBOX_NAME, img.manifest_digest)]
    bed.assert_runs(bed.ns, BUSYBOX_NAME)

    zst_ns = bed.more("zst")
    proc = bed.pyctl("load", "-i", str(zst), namespace=zst_ns)
    assert assert_success(proc) == ["Loaded image: busybox:latest"]
    assert ctr_images(bed.containerd, zst_ns)[BUSYBOX_NAME].digest == img.manifest_digest

    for source, label in ((zst, "zst"), (busybox_image.path, "plain")):
        ns = bed.more(f"stdin-{label}")
        with source.open("rb") as f:
            proc_b = bed.run("import", "-", namespace=ns, stdin=f)
        assert proc_b.returncode == 0, proc_b.stderr
        line = _unpack_line(BUSYBOX_NAME, img.manifest_digest)
        assert proc_b.stdout.decode() == line + "\n"
        assert chain_id(img.diff_ids) in snapshot_keys(bed.containerd, ns)
        assert leases(bed.containerd, ns) == []
    bed.assert_runs(ns, BUSYBOX_NAME)


def test_names_base_name_and_digests(bed: Bed, image_factory: ImageFactory) -> None:
    # an OCI layout that names its image only by tag (ref.name "v1"), like skopeo's oci-archive
    arc = image_factory("example.test/app:v1", variant_content="names", image_name_annotation=False)
    digest = arc.single.manifest_digest
    today = f"docker.io/library/import-{date.today():%Y-%m-%d}"

    proc = bed.pyctl("import", str(arc.path), namespace=bed.ns)
    assert assert_success(proc) == [_unpack_line(f"{today}:v1", digest)]

    based = bed.more("base")
    proc = bed.pyctl(
        "import",
        "--base-name",
        "example.test/team/app",
        "--digests",
        str(arc.path),
        namespace=based,
    )
    assert assert_success(proc) == [
        _unpack_line("example.test/team/app:v1", digest),
        _unpack_line(f"example.test/team/app@{digest}", digest),
    ]
    assert set(ctr_images(bed.containerd, based)) == {
        "example.test/team/app:v1",
        f"example.test/team/app@{digest}",
    }

    # no name at all: skipped with a note (ctr drops it too); --digests names it; load names it
    unnamed = image_factory(None, variant_content="unnamed")
    proc = bed.pyctl("import", str(unnamed.path), namespace=bed.more("unnamed"))
    assert_error(proc, "the archive names no image to import (use --digests)")
    plain_digest = unnamed.single.manifest_digest
    proc = bed.pyctl("import", "--digests", "--no-unpack", str(unnamed.path), namespace=based)
    assert assert_success(proc) == [f"imported {today}@{plain_digest} ({plain_digest})"]
    proc = bed.pyctl("load", "-i", str(unnamed.path), namespace=bed.more("load"))
    shown = f"import-{date.today():%Y-%m-%d}@{plain_digest}"
    assert assert_success(proc) == [f"Loaded image: {shown}"]

    bad = bed.pyctl("import", "--base-name", "app:1", str(arc.path), namespace=bed.ns)
    assert_error(bad, "--base-name app:1: give a repository")


def test_platforms_of_a_multi_platform_archive(bed: Bed, image_factory: ImageFactory) -> None:
    arc = image_factory("example.test/multi:1", multi_platform=True, variant_content="plat")
    idx = arc.index
    name = "example.test/multi:1"
    host, other = idx.host, idx.for_platform(OTHER)
    arm = idx.for_platform("linux/arm/v7")

    # default: the index and this machine's image only, unpacked
    proc = bed.pyctl("import", str(arc.path), namespace=bed.ns)
    assert assert_success(proc) == [_unpack_line(name, idx.index_digest)]
    held = set(content_labels(bed.containerd, bed.ns))
    assert held == {idx.index_digest, *(b.digest for b in host.blobs())}
    assert ctr_images(bed.containerd, bed.ns)[name].media_type == images.OCI.index
    bed.assert_runs(bed.ns, name)

    # --platform: that one (unpacked, as ctr does)
    arm_ns = bed.more("arm")
    proc = bed.pyctl("import", "--platform", "linux/arm/v7", str(arc.path), namespace=arm_ns)
    assert_success(proc)
    held = set(content_labels(bed.containerd, arm_ns))
    assert held == {idx.index_digest, *(b.digest for b in arm.blobs())}
    assert chain_id(arm.diff_ids) in snapshot_keys(bed.containerd, arm_ns)

    # --all-platforms: everything; only what runs here is unpacked
    all_ns = bed.more("all")
    proc = bed.pyctl("import", "--all-platforms", str(arc.path), namespace=all_ns)
    assert assert_success(proc) == [_unpack_line(name, idx.index_digest)]
    assert set(content_labels(bed.containerd, all_ns)) == {b.digest for b in idx.blobs()}
    assert snapshot_keys(bed.containerd, all_ns) == snapshot_keys(bed.containerd, bed.ns)

    # export --platform from the complete copy: the index whole, one platform's blobs
    out = bed.tmp / "other.tar"
    proc = bed.pyctl("export", "--platform", OTHER, str(out), name, namespace=all_ns)
    assert assert_success(proc) == [] and proc.stderr == ""
    blobs = {n.rsplit("/", 1)[1] for n in _members(out) if n.startswith("blobs/sha256/")}
    assert blobs == {
        d.split(":")[1] for d in [idx.index_digest, *(b.digest for b in other.blobs())]
    }
    docker = json.loads(_members(out)["manifest.json"])
    assert docker[0]["Config"] == f"blobs/sha256/{other.config.hex}"
    # ctr reads it, for that platform
    ctr_ns = bed.more("ctr")
    bed.containerd.ctr("images", "import", "--platform", OTHER, str(out), namespace=ctr_ns)
    assert ctr_images(bed.containerd, ctr_ns)[name].digest == idx.index_digest

    # from the host-only copy: other platforms are skipped with a note, or refused
    out2 = bed.tmp / "both.tar"
    proc = bed.pyctl(
        "export", "--platform", HOST, "--platform", OTHER, str(out2), name, namespace=bed.ns
    )
    assert proc.returncode == 0 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"note: skipping {OTHER} ({other.manifest_digest}) of {name}: "
        "its content is not in containerd"
    ]
    assert f"blobs/sha256/{host.config.hex}" in _members(out2)
    proc = bed.pyctl("export", "--all-platforms", str(bed.tmp / "all.tar"), name, namespace=bed.ns)
    assert_error(
        proc, f"export {bed.tmp / 'all.tar'}: {name}: content sha256:", "is not in containerd"
    )
    assert not (bed.tmp / "all.tar").exists()
    assert [p.name for p in bed.tmp.iterdir() if p.name.startswith(".pyctl-export")] == []


# export -----------------------------------------------------------------------------------------


def test_export_is_read_by_ctr_and_skopeo_and_is_reproducible(
    bed: Bed, busybox_image: Archive
) -> None:
    img = busybox_image.single
    images.import_into(bed.containerd, busybox_image, namespace=bed.ns)
    out = bed.tmp / "out.tar"
    proc = bed.pyctl("export", str(out), "busybox", namespace=bed.ns)
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == "", proc.stderr

    with tarfile.open(out) as tf:
        names = tf.getnames()
    assert names[:2] == ["blobs", "blobs/sha256"] and names[2:] == sorted(names[2:])
    members = _members(out)
    index = json.loads(members["index.json"])
    assert index["manifests"] == [
        {
            "mediaType": images.OCI.manifest,
            "digest": img.manifest_digest,
            "size": img.manifest.size,
            "annotations": {
                "io.containerd.image.name": BUSYBOX_NAME,
                "org.opencontainers.image.ref.name": "latest",
            },
        }
    ]
    docker = json.loads(members["manifest.json"])
    assert docker == [
        {
            "Config": f"blobs/sha256/{img.config.hex}",
            "RepoTags": ["busybox:latest"],
            "Layers": [f"blobs/sha256/{b.hex}" for b in img.layers],
        }
    ]

    sk = Skopeo(bed.tmp)
    inspected = json.loads(sk("inspect", f"oci-archive:{out}").stdout)
    assert inspected["Digest"] == img.manifest_digest
    assert inspected["Layers"] == list(img.layer_digests)

    ctr_ns = bed.more("ctr")
    bed.containerd.ctr("images", "import", str(out), namespace=ctr_ns)
    assert ctr_images(bed.containerd, ctr_ns)[BUSYBOX_NAME].digest == img.manifest_digest
    bed.assert_runs(ctr_ns, BUSYBOX_NAME)

    # the same image exported again (other spelling, by ID) gives the same bytes
    again = bed.tmp / "again.tar"
    proc = bed.pyctl("image", "export", str(again), BUSYBOX_NAME, namespace=bed.ns)
    assert proc.returncode == 0, proc.stderr
    assert again.read_bytes() == out.read_bytes()
    proc = bed.pyctl("export", "--skip-manifest-json", str(again), BUSYBOX_NAME, namespace=bed.ns)
    assert proc.returncode == 0 and "manifest.json" not in _members(again)


def test_save_to_stdout_round_trip_and_terminal(bed: Bed, busybox_image: Archive) -> None:
    img = busybox_image.single
    proc = bed.pyctl("import", str(busybox_image.path), namespace=bed.ns)
    assert_success(proc)
    exported = bed.tmp / "export.tar"
    assert bed.pyctl("export", str(exported), BUSYBOX_NAME, namespace=bed.ns).returncode == 0

    saved = bed.tmp / "saved.tar"
    with saved.open("wb") as f:
        proc_b = bed.run("save", "busybox", namespace=bed.ns, stdout=f)
    assert proc_b.returncode == 0 and proc_b.stderr == b""
    assert saved.read_bytes() == exported.read_bytes()
    proc_b = bed.run("export", "-", BUSYBOX_NAME, namespace=bed.ns)
    assert proc_b.stdout == exported.read_bytes()

    # round trip: rmi, then load what was saved: the same image, runnable
    assert bed.pyctl("rmi", "busybox", namespace=bed.ns).returncode == 0
    with saved.open("rb") as f:
        proc_b = bed.run("load", namespace=bed.ns, stdin=f)
    assert proc_b.returncode == 0, proc_b.stderr
    assert proc_b.stdout == b"Loaded image: busybox:latest\n"
    assert ctr_images(bed.containerd, bed.ns)[BUSYBOX_NAME].digest == img.manifest_digest
    bed.assert_runs(bed.ns, BUSYBOX_NAME)

    # and export → rmi → import of a file
    assert bed.pyctl("rmi", "busybox", namespace=bed.ns).returncode == 0
    proc = bed.pyctl("import", str(exported), namespace=bed.ns)
    assert assert_success(proc) == [_unpack_line(BUSYBOX_NAME, img.manifest_digest)]

    # never a tar on a terminal, nor read from one
    main_fd, sub_fd = os.openpty()
    try:
        proc_b = bed.run("save", "busybox", namespace=bed.ns, stdout=sub_fd)
        proc_in = bed.run("load", namespace=bed.ns, stdin=sub_fd)
    finally:
        os.close(sub_fd)
        os.close(main_fd)
    assert proc_in.returncode == 1 and proc_in.stderr == (
        b"pyctl: error: load: stdin is a terminal: give an archive with -i FILE or pipe one in\n"
    )
    assert proc_b.returncode == 1
    assert proc_b.stderr.decode().splitlines() == [
        "pyctl: error: save: refusing to write a tar archive to a terminal "
        "(redirect stdout or name a file)"
    ]
    proc = bed.pyctl("save", "-o", str(bed.tmp / "x.tar"), "nosuch:image", namespace=bed.ns)
    assert_error(proc, f"save {bed.tmp / 'x.tar'}: no such image", stdout="")
    assert not (bed.tmp / "x.tar").exists()


def test_docker_25_save_prefers_the_oci_layout(bed: Bed, image_factory: ImageFactory) -> None:
    arc = image_factory("example.test/both:1", variant_content="both", docker_manifest_json=True)
    # manifest.json says another name: the OCI layout wins
    members = _members(arc.path)
    doc = json.loads(members["manifest.json"])
    doc[0]["RepoTags"] = ["example.test/other:9"]
    info = tarfile.TarInfo("manifest.json")
    data = json.dumps(doc).encode()
    info.size = len(data)
    both = _rewrite(arc.path, bed.tmp / "both.tar", drop=["manifest.json"], extra=[(info, data)])
    proc = bed.pyctl("load", "-i", str(both), namespace=bed.ns)
    assert assert_success(proc) == ["Loaded image: example.test/both:1"]
    assert set(ctr_images(bed.containerd, bed.ns)) == {"example.test/both:1"}


# bad archives -----------------------------------------------------------------------------------


def _entry(
    name: str, kind: bytes = tarfile.REGTYPE, link: str = ""
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    data = b"x" if kind == tarfile.REGTYPE else b""
    info.size = len(data)
    return info, data


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (_entry("/etc/cron.d/evil"), "unsafe entry '/etc/cron.d/evil': absolute path"),
        (_entry("blobs/../../evil"), "unsafe entry 'blobs/../../evil': '..' in its path"),
        (
            _entry("blobs/l", tarfile.SYMTYPE, "../../etc/shadow"),
            "unsafe entry 'blobs/l': link to '../../etc/shadow' outside the archive",
        ),
        (_entry("dev/null", tarfile.CHRTYPE), "unsafe entry 'dev/null': character device"),
    ],
    ids=["absolute", "dotdot", "symlink-out", "device"],
)
def test_unsafe_archives_are_refused(
    bed: Bed, busybox_image: Archive, extra: tuple[tarfile.TarInfo, bytes], message: str
) -> None:
    bad = _rewrite(busybox_image.path, bed.tmp / "app.tar", extra=[extra])
    proc = bed.pyctl("import", str(bad), namespace=bed.ns)
    assert_error(proc, f"import {bad}: {message}")
    with bad.open("rb") as f:
        proc_b = bed.run("load", namespace=bed.ns, stdin=f)
    assert proc_b.returncode == 1
    assert proc_b.stderr.decode().splitlines() == [f"pyctl: error: load stdin: {message}"]
    bed.assert_nothing_registered(bed.ns)


def test_truncated_and_incomplete_archives_register_nothing(
    bed: Bed, busybox_image: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    img = busybox_image.single
    data = busybox_image.path.read_bytes()
    monkeypatch.chdir(bed.tmp)  # pyctl runs there too: the error names "app.tar"
    Path("app.tar").write_bytes(data[: len(data) // 2])
    proc = bed.pyctl("import", "app.tar", namespace=bed.ns)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == "pyctl: error: import app.tar: unexpected end of archive\n"
    with Path("app.tar").open("rb") as f:
        proc_b = bed.run("import", "-", namespace=bed.ns, stdin=f)
    assert proc_b.stderr == b"pyctl: error: import stdin: unexpected end of archive\n"
    Path("app.tar.gz").write_bytes(gzip.compress(data)[:-100])
    proc = bed.pyctl("import", "app.tar.gz", namespace=bed.ns)
    assert_error(proc, "import app.tar.gz: unexpected end of archive")

    # an index whose manifest lists a layer the archive lacks
    layer = img.layers[-1]
    Path("missing.tar").unlink(missing_ok=True)
    _rewrite(busybox_image.path, Path("missing.tar"), drop=[f"blobs/sha256/{layer.hex}"])
    proc = bed.pyctl("import", "missing.tar", namespace=bed.ns)
    assert_error(
        proc,
        f"import missing.tar: blob {layer.digest} (blobs/sha256/{layer.hex}) "
        "is missing from the archive",
    )
    # ...or the manifest itself
    _rewrite(busybox_image.path, Path("nomanifest.tar"), drop=[f"blobs/sha256/{img.manifest.hex}"])
    with Path("nomanifest.tar").open("rb") as f:
        proc_b = bed.run("import", "-", namespace=bed.ns, stdin=f)
    assert proc_b.returncode == 1
    assert f"blob {img.manifest_digest}" in proc_b.stderr.decode()
    assert "is missing from the archive" in proc_b.stderr.decode()
    # a blob whose bytes are not its digest
    corrupt = bytearray(layer.data)
    corrupt[len(corrupt) // 2] ^= 0xFF
    info = tarfile.TarInfo(f"blobs/sha256/{layer.hex}")
    info.size = len(corrupt)
    _rewrite(
        busybox_image.path,
        Path("corrupt.tar"),
        drop=[f"blobs/sha256/{layer.hex}"],
        extra=[(info, bytes(corrupt))],
    )
    proc = bed.pyctl("import", "corrupt.tar", namespace=bed.ns)
    assert_error(proc, f"import corrupt.tar: blobs/sha256/{layer.hex} does not match its digest")
    with Path("corrupt.tar").open("rb") as f:
        proc_b = bed.run("import", "-", namespace=bed.ns, stdin=f)
    assert proc_b.stderr.decode() == (
        f"pyctl: error: import stdin: blobs/sha256/{layer.hex} does not match its digest "
        f"{layer.digest}\n"
    )
    bed.assert_nothing_registered(bed.ns)
    assert layer.digest not in content_labels(bed.containerd, bed.ns)


def test_a_corrupt_blob_is_refused_even_when_containerd_has_the_good_one(
    bed: Bed, busybox_image: Archive
) -> None:
    """containerd shares content between namespaces: a blob it holds elsewhere is taken into
    this namespace without the archive's bytes being sent, so its commit checks nothing; the
    archive's copy is checked all the same (a re-import into the same namespace too)."""
    img = busybox_image.single
    layer = img.layers[-1]
    elsewhere = bed.more("holder")
    bed.containerd.import_image(busybox_image, namespace=elsewhere)  # the good layer is in
    corrupt = bytearray(layer.data)
    corrupt[len(corrupt) // 2] ^= 0xFF
    info = tarfile.TarInfo(f"blobs/sha256/{layer.hex}")
    info.size = len(corrupt)
    bad = _rewrite(
        busybox_image.path,
        bed.tmp / "corrupt.tar",
        drop=[f"blobs/sha256/{layer.hex}"],
        extra=[(info, bytes(corrupt))],
    )
    for ns in (bed.ns, elsewhere):
        proc = bed.pyctl("import", str(bad), namespace=ns)
        assert_error(proc, f"blobs/sha256/{layer.hex} does not match its digest {layer.digest}")
        with bad.open("rb") as f:  # read once, front to back: the same check
            proc_b = bed.run("import", "-", namespace=ns, stdin=f)
        assert proc_b.returncode == 1 and proc_b.stdout == b""
        assert proc_b.stderr.decode() == (
            f"pyctl: error: import stdin: blobs/sha256/{layer.hex} does not match its digest "
            f"{layer.digest}\n"
        )
    assert bed.containerd.images(bed.ns) == []
    assert bed.containerd.images(elsewhere) == [BUSYBOX_NAME]  # untouched
