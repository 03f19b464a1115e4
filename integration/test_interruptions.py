"""`pyctl pull` interrupted, raced and starved of containerd: kill -9 and Ctrl-C halfway
through a large layer (the re-run resumes from containerd's ingest with ``Range``), eight pulls
of one image at once, pulls racing ``rmi``, garbage collection during a pull (the lease),
containerd restarted under a pull, and a socket that is missing or not ours.

Every case checks what the operator sees (exit status, one ``pyctl: error:`` line) and what
containerd holds afterwards (``ctr images ls/check``, ``ctr content ls/active``, leases,
snapshots).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from integration.conftest import PullBed
from integration.faultproxy import FaultProxy
from integration.helpers import finish, wait_until
from integration.images import ImageSpec
from integration.registry_helpers import (
    assert_failure,
    assert_success,
    chain_ids,
    content_labels,
    ctr_images,
    images_check,
    ingest_offsets,
    leases,
    snapshot_keys,
)
from integration.testbed import Containerd
from integration.unprivileged import ReadablePyctl

BIG = 24 << 20  # incompressible: the layer is as large on the wire


def _mid_transfer(proxy: FaultProxy, digest: str, at: int) -> bool:
    return any(r.body_bytes_out >= at for r in proxy.blob_requests(digest))


def _assert_complete(bed: PullBed, name: str, img: ImageSpec) -> None:
    """The record points at the image, all its content is there and it is unpacked."""
    cd, ns = bed.containerd, bed.namespace
    assert ctr_images(cd, ns)[name].digest == img.manifest_digest
    assert images_check(cd, ns)[name] == ("complete", True)
    assert set(chain_ids(list(img.diff_ids))) <= set(snapshot_keys(cd, ns))


# --- interruption and resume -------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_interrupted_pull_resumes_from_its_ingest(pull_bed: PullBed, sig: signal.Signals) -> None:
    """Halfway through a 24 MiB layer the pull is killed (or interrupted). No image record is
    left, the partial ingest is; the re-run reuses that ingest (one ``Range`` request from
    exactly its offset, no second ingest) and fetches less than half of the layer again."""
    bed, proxy, cd, ns = pull_bed, pull_bed.proxy, pull_bed.containerd, pull_bed.namespace
    img, name = bed.seed("resume", big=BIG)
    layer = img.biggest_layer
    stall_at = layer.size * 3 // 4
    proxy.stall(60, after_bytes=stall_at, method="GET", path=f"/blobs/{layer.digest}$")
    ref = f"layer-{layer.digest}"

    proc = bed.start("pull", name)
    try:
        wait_until(
            "3/4 of the layer sent", lambda: _mid_transfer(proxy, layer.digest, stall_at), 30
        )
        # what arrived is in containerd (a few MiB may still be in flight)
        wait_until(
            "the ingest holds more than half of the layer",
            lambda: ingest_offsets(cd, ns).get(ref, 0) > layer.size // 2 + (2 << 20),
            20,
        )
        proc.send_signal(sig)
    finally:
        done = finish(proc, 20)

    if sig == signal.SIGKILL:
        assert done.returncode == -signal.SIGKILL
    else:
        assert done.returncode == 130, done
        assert done.stderr.splitlines()[-1] == "pyctl: interrupted", done.stderr
        assert "Traceback" not in done.stderr
    assert done.stdout == ""
    assert ctr_images(cd, ns) == {}
    left = ingest_offsets(cd, ns)
    assert list(left) == [ref], left  # the big layer's ingest, and nothing else
    offset = left[ref]
    assert layer.size // 2 < offset < layer.size

    proxy.clear_faults()
    proxy.clear()
    assert assert_success(bed.pyctl("pull", name))[-1] == name
    _assert_complete(bed, name, img)
    # one request for the rest of the layer, from exactly where the ingest stood
    assert proxy.ranges(layer.digest) == [f"bytes={offset}-"]
    refetched = sum(r.body_bytes_out for r in proxy.requests_for("GET"))
    assert refetched < layer.size // 2, refetched
    assert ingest_offsets(cd, ns) == {}


# --- concurrency -------------------------------------------------------------------------------


def test_eight_pulls_of_one_image_at_once(pull_bed: PullBed) -> None:
    """Eight `pyctl pull` of the same image into one namespace. The first download of the
    big layer is held up for two seconds, so the others meet its locked ingest: they wait
    for it instead of failing ("ref ... locked"), each layer is downloaded once, and
    containerd ends with one record, one set of blobs and snapshots, no ingest, no lease."""
    bed, proxy, cd, ns = pull_bed, pull_bed.proxy, pull_bed.containerd, pull_bed.namespace
    img, name = bed.seed("eight", big=4 << 20)
    layer = img.biggest_layer
    proxy.stall(2, after_bytes=1 << 20, method="GET", path=f"/blobs/{layer.digest}$")

    procs = [bed.start("pull", name) for _ in range(8)]
    for r in [finish(p, 120) for p in procs]:
        assert r.returncode == 0, r
        assert r.stdout == name + "\n"
        assert "locked" not in r.stderr and "error" not in r.stderr, r.stderr

    assert set(ctr_images(cd, ns)) == {name}
    _assert_complete(bed, name, img)
    blobs = {img.manifest_digest, img.config_digest, *img.layer_digests}
    assert set(content_labels(cd, ns)) == blobs
    counts = proxy.blob_get_counts()
    assert counts[layer.digest] == 1, counts  # the others waited for it
    assert all(counts.get(d, 0) <= 1 for d in img.layer_digests), counts
    assert ingest_offsets(cd, ns) == {}
    assert leases(cd, ns) == []
    assert sorted(snapshot_keys(cd, ns)) == sorted(chain_ids(list(img.diff_ids)))


def test_pull_racing_rmi_never_leaves_a_broken_record(pull_bed: PullBed) -> None:
    """`pyctl rmi` (containerd deletes synchronously, with garbage collection) fired at
    different moments of a `pyctl pull` of the same image: whatever order they land in,
    a record that exists is complete and unpacked."""
    bed, cd, ns = pull_bed, pull_bed.containerd, pull_bed.namespace
    _, name = bed.seed("race", big=1 << 20)
    for i in range(6):
        pull = bed.start("pull", name)
        time.sleep(0.1 * i)
        rmi = bed.pyctl("rmi", name)
        pulled = finish(pull)
        assert pulled.returncode == 0, pulled
        if rmi.returncode:
            assert_failure(rmi, "no such image")
        records = images_check(cd, ns)
        for record, state in records.items():
            assert state == ("complete", True), (i, record, state)
        if records:  # start the next round from an empty namespace
            assert_success(bed.pyctl("rmi", name))
    assert ctr_images(cd, ns) == {}
    # Content is not checked: what a pull's lease held while `rmi` collected garbage stays
    # until the next collection (leases are dropped without a synchronous one, as by ctr).


def test_garbage_collection_during_a_pull_keeps_its_content(pull_bed: PullBed) -> None:
    """While B's big layer is held up, `ctr images rm --sync` of image A (which shares B's
    busybox layer) runs the garbage collector: A's own layer goes, but nothing B's pull
    needs does (its lease holds the shared layer, the layers already written and the partial
    ingest), and the pull completes."""
    bed, proxy, cd, ns = pull_bed, pull_bed.proxy, pull_bed.containerd, pull_bed.namespace
    a, name_a = bed.seed("gc-a")
    b, name_b = bed.seed("gc-b", big=4 << 20)
    shared = set(a.layer_digests) & set(b.layer_digests)
    assert shared, "A and B share the busybox layer"
    a_only = set(a.layer_digests) - shared
    assert_success(bed.pyctl("pull", name_a))

    big = b.biggest_layer
    proxy.stall(4, after_bytes=2 << 20, method="GET", path=f"/blobs/{big.digest}$")
    proc = bed.start("pull", name_b)
    try:
        wait_until(
            "B's big layer mid-transfer", lambda: _mid_transfer(proxy, big.digest, 2 << 20), 30
        )
        written = set(b.layer_digests) - {big.digest}
        wait_until("B's small layers written", lambda: written <= set(content_labels(cd, ns)), 10)
        cd.ctr("images", "rm", "--sync", name_a, namespace=ns)
        held = content_labels(cd, ns)
        assert not a_only & set(held), "the garbage collector did not run"
        assert written | {b.config_digest} <= set(held)
        assert f"layer-{big.digest}" in ingest_offsets(cd, ns)
    finally:
        pulled = finish(proc)
    assert pulled.returncode == 0, pulled
    _assert_complete(bed, name_b, b)


# --- containerd faults ---------------------------------------------------------------------------


@pytest.fixture
def own_containerd() -> Iterator[Containerd]:
    """A containerd of this test's own (the session one is shared): restarted or locked
    down here without disturbing other tests."""
    cd = Containerd(cri=False).start()
    try:
        yield cd
    finally:
        cd.stop()


def test_containerd_restarted_mid_pull(pull_bed: PullBed, own_containerd: Containerd) -> None:
    """containerd is killed and started again while a layer is downloading: the pull stops
    with one line saying the connection to containerd was lost (no record); the partial
    ingest survives the restart and the re-run resumes from it."""
    cd = own_containerd
    runner = type(pull_bed.runner)(cd, pull_bed.runner.home)
    bed = PullBed(
        cd,
        "restart",
        runner,
        pull_bed.registry,
        pull_bed.proxy,
        pull_bed.image_factory,
        pull_bed.tmp,
    )
    proxy, ns = bed.proxy, bed.namespace
    img, name = bed.seed("restart", big=8 << 20)
    layer = img.biggest_layer
    proxy.stall(3, after_bytes=6 << 20, method="GET", path=f"/blobs/{layer.digest}$")
    ref = f"layer-{layer.digest}"

    proc = bed.start("pull", name)
    try:
        wait_until(
            "the layer mid-transfer", lambda: _mid_transfer(proxy, layer.digest, 6 << 20), 30
        )
        wait_until("the ingest has data", lambda: ingest_offsets(cd, ns).get(ref, 0) > 0, 10)
        cd.restart()
    finally:
        done = finish(proc)
    msg = assert_failure(done, f"pull {name}:", "lost the connection to containerd", cd.address)
    assert "restart" in msg
    assert ctr_images(cd, ns) == {}
    offset = ingest_offsets(cd, ns)[ref]
    assert offset > 0

    proxy.clear_faults()
    proxy.clear()
    assert assert_success(bed.pyctl("pull", name))[-1] == name
    _assert_complete(bed, name, img)
    assert proxy.ranges(layer.digest) == [f"bytes={offset}-"]


def test_containerd_socket_missing(pull_bed: PullBed, tmp_path: Path) -> None:
    sock = tmp_path / "gone" / "containerd.sock"
    proc = pull_bed.pyctl("--address", str(sock), "pull", pull_bed.proxy.ref("team/any", "1"))
    assert_failure(
        proc, f"cannot connect to containerd at unix://{sock}", "no such socket", "is containerd"
    )
    assert pull_bed.proxy.requests == []  # nothing was fetched for nothing


def test_containerd_socket_not_permitted(
    own_containerd: Containerd, readable_pyctl: ReadablePyctl
) -> None:
    """A user who may not use containerd's socket (a 0660 root:root socket, run as
    ``nobody``) is told so, with what to do; group access to the socket is enough.
    (``nobody`` runs a world-readable copy of pyctl: the checkout may be in a private
    directory such as /root.)"""
    cd = own_containerd
    home = Path(tempfile.mkdtemp(prefix="pyctl-nobody-"))

    def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": str(home),
            "CONTAINERD_ADDRESS": cd.address,
            "CONTAINERD_NAMESPACE": "nobody",
        }
        return readable_pyctl.run(*args, env=env)

    try:
        home.chmod(0o755)
        sock = Path(cd.address)
        assert (sock.stat().st_mode & 0o777, sock.stat().st_uid) == (0o660, 0)
        want = (f"cannot connect to containerd at unix://{cd.address}", "permission denied")
        hint = "run with sudo or as a user allowed to use the socket"

        # the directory is closed (0700): the socket cannot even be looked at
        assert_failure(as_nobody("images"), *want, hint)

        # the socket is visible but not ours
        cd.dir.chmod(0o755)
        for args in (["images"], ["pull", "127.0.0.1:1/team/app:1"], ["ps"]):
            assert_failure(as_nobody(*args), *want, hint)

        # what the hint says works: nobody's group may use the socket
        os.chown(sock, 0, readable_pyctl.gid)
        proc = as_nobody("images", "-q")
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    finally:
        cd.dir.chmod(0o700)
        os.chown(cd.address, 0, 0)
        shutil.rmtree(home, ignore_errors=True)
