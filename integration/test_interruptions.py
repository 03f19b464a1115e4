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
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from integration.conftest import ImageFactory, PyctlRunner
from integration.faultproxy import FaultProxy
from integration.helpers import wait_until
from integration.images import Archive, Blob, ImageSpec
from integration.registry_helpers import (
    Skopeo,
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
from integration.testbed import Containerd, Registry

BIG = 24 << 20  # incompressible: the layer is as large on the wire


@pytest.fixture
def sk(tmp_path: Path) -> Skopeo:
    return Skopeo(tmp_path)


def _single(archive: Archive) -> ImageSpec:
    assert isinstance(archive.image, ImageSpec)
    return archive.image


def _biggest(img: ImageSpec) -> Blob:
    return max(img.layers, key=lambda b: b.size)


def _seed(
    image_factory: ImageFactory,
    sk: Skopeo,
    registry: Registry,
    repo: str,
    *,
    big: int = 0,
) -> ImageSpec:
    """A distinct image (busybox + a small variant layer + ``big`` random bytes) in
    ``registry`` as ``repo:1``."""
    files = {"big.bin": os.urandom(big)} if big else None
    arc = image_factory(f"example.test/{repo}:1", variant_content=repo, files=files)
    sk.seed(arc.path, registry.ref(f"team/{repo}", "1"))
    return _single(arc)


def _popen(
    pyctl: PyctlRunner, namespace: str, *args: str, address: str | None = None
) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "pyctl", "--address", address or pyctl.containerd.address]
    return subprocess.Popen(
        [*cmd, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=pyctl.env(namespace),
    )


def _finish(proc: subprocess.Popen[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _mid_transfer(proxy: FaultProxy, digest: str, at: int) -> bool:
    return any(r.body_bytes_out >= at for r in proxy.blob_requests(digest))


def _assert_complete(containerd: Containerd, namespace: str, name: str, img: ImageSpec) -> None:
    """The record points at the image, all its content is there and it is unpacked."""
    assert ctr_images(containerd, namespace)[name].digest == img.manifest_digest
    assert images_check(containerd, namespace)[name] == ("complete", True)
    assert set(chain_ids(list(img.diff_ids))) <= set(snapshot_keys(containerd, namespace))


# --- interruption and resume -------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_interrupted_pull_resumes_from_its_ingest(
    containerd: Containerd,
    namespace: str,
    pyctl: PyctlRunner,
    registry: Registry,
    fault_proxy: FaultProxy,
    image_factory: ImageFactory,
    sk: Skopeo,
    sig: signal.Signals,
) -> None:
    """Halfway through a 24 MiB layer the pull is killed (or interrupted). No image record is
    left, the partial ingest is; the re-run reuses that ingest (one ``Range`` request from
    exactly its offset, no second ingest) and fetches less than half of the layer again."""
    img = _seed(image_factory, sk, registry, "resume", big=BIG)
    layer = _biggest(img)
    name = fault_proxy.ref("team/resume", "1")
    stall_at = layer.size * 3 // 4
    fault_proxy.stall(60, after_bytes=stall_at, method="GET", path=f"/blobs/{layer.digest}$")

    ref = f"layer-{layer.digest}"
    proc = _popen(pyctl, namespace, "pull", name)
    try:
        wait_until(
            "the layer is 3/4 through",
            lambda: _mid_transfer(fault_proxy, layer.digest, stall_at),
            30,
        )
        # what arrived is in containerd (a few MiB may still be in flight)
        wait_until(
            "the ingest holds more than half of the layer",
            lambda: ingest_offsets(containerd, namespace).get(ref, 0) > layer.size // 2 + (2 << 20),
            20,
        )
        proc.send_signal(sig)
        done = _finish(proc, 20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    if sig == signal.SIGKILL:
        assert done.returncode == -signal.SIGKILL
    else:
        assert done.returncode == 130, done
        assert done.stderr.splitlines()[-1] == "pyctl: interrupted", done.stderr
        assert "Traceback" not in done.stderr
    assert done.stdout == ""
    assert ctr_images(containerd, namespace) == {}
    left = ingest_offsets(containerd, namespace)
    assert list(left) == [ref], left  # the big layer's ingest, and nothing else
    offset = left[ref]
    assert layer.size // 2 < offset < layer.size

    fault_proxy.clear_faults()
    fault_proxy.clear()
    assert assert_success(pyctl("pull", name, namespace=namespace))[-1] == name
    _assert_complete(containerd, namespace, name, img)
    # one request for the rest of the layer, from exactly where the ingest stood
    assert fault_proxy.ranges(layer.digest) == [f"bytes={offset}-"]
    refetched = sum(r.body_bytes_out for r in fault_proxy.requests_for("GET"))
    assert refetched < layer.size // 2, refetched
    assert ingest_offsets(containerd, namespace) == {}


# --- concurrency -------------------------------------------------------------------------------


def test_eight_pulls_of_one_image_at_once(
    containerd: Containerd,
    namespace: str,
    pyctl: PyctlRunner,
    registry: Registry,
    fault_proxy: FaultProxy,
    image_factory: ImageFactory,
    sk: Skopeo,
) -> None:
    """Eight `pyctl pull` of the same image into one namespace. The first download of the
    big layer is held up for two seconds, so the others meet its locked ingest: they wait
    for it instead of failing ("ref ... locked"), each layer is downloaded once, and
    containerd ends with one record, one set of blobs and snapshots, no ingest, no lease."""
    img = _seed(image_factory, sk, registry, "eight", big=4 << 20)
    layer = _biggest(img)
    name = fault_proxy.ref("team/eight", "1")
    fault_proxy.stall(2, after_bytes=1 << 20, method="GET", path=f"/blobs/{layer.digest}$")

    procs = [_popen(pyctl, namespace, "pull", name) for _ in range(8)]
    results = [_finish(p, 120) for p in procs]
    for r in results:
        assert r.returncode == 0, r
        assert r.stdout == name + "\n"
        assert "locked" not in r.stderr and "error" not in r.stderr, r.stderr

    assert set(ctr_images(containerd, namespace)) == {name}
    _assert_complete(containerd, namespace, name, img)
    blobs = {img.manifest_digest, img.config_digest, *img.layer_digests}
    assert set(content_labels(containerd, namespace)) == blobs
    counts = fault_proxy.blob_get_counts()
    assert counts[layer.digest] == 1, counts  # the others waited for it
    assert all(counts.get(d, 0) <= 1 for d in img.layer_digests), counts
    assert ingest_offsets(containerd, namespace) == {}
    assert leases(containerd, namespace) == []
    assert sorted(snapshot_keys(containerd, namespace)) == sorted(chain_ids(list(img.diff_ids)))


def test_pull_racing_rmi_never_leaves_a_broken_record(
    containerd: Containerd,
    namespace: str,
    pyctl: PyctlRunner,
    registry: Registry,
    fault_proxy: FaultProxy,
    image_factory: ImageFactory,
    sk: Skopeo,
) -> None:
    """`pyctl rmi` (containerd deletes synchronously, with garbage collection) fired at
    different moments of a `pyctl pull` of the same image: whatever order they land in,
    a record that exists is complete and unpacked."""
    img = _seed(image_factory, sk, registry, "race", big=1 << 20)
    name = fault_proxy.ref("team/race", "1")
    outcomes = set()
    for i in range(8):
        pull = _popen(pyctl, namespace, "pull", name)
        time.sleep(0.08 * i)
        rmi = pyctl("rmi", name, namespace=namespace)
        pulled = _finish(pull)
        assert pulled.returncode == 0, pulled
        if rmi.returncode:
            assert_failure(rmi, "no such image")
        records = images_check(containerd, namespace)
        outcomes.add(bool(records))
        for record, state in records.items():
            assert state == ("complete", True), (i, record, state)
        # between rounds: no image, so each round starts from an empty namespace
        if records:
            assert_success(pyctl("rmi", name, namespace=namespace))
    assert ctr_images(containerd, namespace) == {}
    assert img.manifest_digest not in content_labels(containerd, namespace)


def test_garbage_collection_during_a_pull_keeps_its_content(
    containerd: Containerd,
    namespace: str,
    pyctl: PyctlRunner,
    registry: Registry,
    fault_proxy: FaultProxy,
    image_factory: ImageFactory,
    sk: Skopeo,
) -> None:
    """While B's big layer is held up, `ctr images rm --sync` of image A (which shares B's
    busybox layer) runs the garbage collector: A's own layer goes, but nothing B's pull
    needs does (its lease holds the shared layer, the layers already written and the partial
    ingest), and the pull completes."""
    a = _seed(image_factory, sk, registry, "gc-a")
    b = _seed(image_factory, sk, registry, "gc-b", big=4 << 20)
    shared = set(a.layer_digests) & set(b.layer_digests)
    assert shared, "A and B share the busybox layer"
    a_only = set(a.layer_digests) - shared
    name_a = fault_proxy.ref("team/gc-a", "1")
    name_b = fault_proxy.ref("team/gc-b", "1")
    assert_success(pyctl("pull", name_a, namespace=namespace))

    big = _biggest(b)
    fault_proxy.stall(4, after_bytes=2 << 20, method="GET", path=f"/blobs/{big.digest}$")
    proc = _popen(pyctl, namespace, "pull", name_b)
    try:
        wait_until(
            "B's big layer is mid-transfer",
            lambda: _mid_transfer(fault_proxy, big.digest, 2 << 20),
            30,
        )
        written = set(b.layer_digests) - {big.digest}
        wait_until(
            "B's small layers are written",
            lambda: written <= set(content_labels(containerd, namespace)),
            10,
        )
        containerd.ctr("images", "rm", "--sync", name_a, namespace=namespace)
        held = content_labels(containerd, namespace)
        assert not a_only & set(held), "the garbage collector did not run"
        assert written | {b.config_digest} <= set(held)
        assert f"layer-{big.digest}" in ingest_offsets(containerd, namespace)
    finally:
        pulled = _finish(proc)
    assert pulled.returncode == 0, pulled
    _assert_complete(containerd, namespace, name_b, b)


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


def test_containerd_restarted_mid_pull(
    own_containerd: Containerd,
    pyctl: PyctlRunner,
    registry: Registry,
    fault_proxy: FaultProxy,
    image_factory: ImageFactory,
    sk: Skopeo,
) -> None:
    """containerd is killed and started again while a layer is downloading: the pull stops
    with one line saying the connection to containerd was lost (no record); the partial
    ingest survives the restart and the re-run resumes from it."""
    cd = own_containerd
    runner = PyctlRunner(cd, pyctl.home)
    ns = "restart"
    img = _seed(image_factory, sk, registry, "restart", big=8 << 20)
    layer = _biggest(img)
    name = fault_proxy.ref("team/restart", "1")
    fault_proxy.stall(3, after_bytes=6 << 20, method="GET", path=f"/blobs/{layer.digest}$")
    ref = f"layer-{layer.digest}"

    proc = _popen(runner, ns, "pull", name, address=cd.address)
    try:
        wait_until(
            "the layer is mid-transfer",
            lambda: _mid_transfer(fault_proxy, layer.digest, 6 << 20),
            30,
        )
        wait_until("the ingest has data", lambda: ingest_offsets(cd, ns).get(ref, 0) > 0, 10)
        cd.restart()
    finally:
        done = _finish(proc)
    msg = assert_failure(done, f"pull {name}:", "lost the connection to containerd", cd.address)
    assert "restart" in msg
    assert ctr_images(cd, ns) == {}
    offset = ingest_offsets(cd, ns)[ref]
    assert offset > 0

    fault_proxy.clear_faults()
    fault_proxy.clear()
    assert assert_success(runner("pull", name, namespace=ns))[-1] == name
    _assert_complete(cd, ns, name, img)
    ranges = fault_proxy.ranges(layer.digest)
    assert len(ranges) == 1 and re.fullmatch(r"bytes=\d+-", ranges[0] or ""), ranges
    assert int((ranges[0] or "")[6:-1]) == offset


def test_containerd_socket_missing(
    pyctl: PyctlRunner, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    sock = tmp_path / "gone" / "containerd.sock"
    proc = pyctl("--address", str(sock), "pull", fault_proxy.ref("team/any", "1"))
    assert_failure(
        proc,
        f"cannot connect to containerd at unix://{sock}",
        "no such socket",
        "is containerd running",
    )
    assert fault_proxy.requests == []  # nothing was fetched for nothing


PYCTL = (sys.executable, "-m", "pyctl")


def _as_nobody(cd: Containerd, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "CONTAINERD_ADDRESS": cd.address,
        "CONTAINERD_NAMESPACE": "nobody",
    }
    return subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *PYCTL, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


def test_containerd_socket_not_permitted(own_containerd: Containerd) -> None:
    """A user who may not use containerd's socket (a 0660 root:root socket, run as
    ``nobody``) is told so, with what to do; group access to the socket is enough."""
    cd = own_containerd
    home = Path(tempfile.mkdtemp(prefix="pyctl-nobody-"))
    try:
        home.chmod(0o755)
        sock = Path(cd.address)
        assert (sock.stat().st_mode & 0o777, sock.stat().st_uid) == (0o660, 0)
        hint = "run with sudo or as a user allowed to use the socket"

        # the directory is closed (0700): the socket cannot even be looked at
        proc = _as_nobody(cd, home, "images")
        assert_failure(
            proc, f"cannot connect to containerd at unix://{cd.address}", "permission denied", hint
        )

        # the socket is visible but not ours
        cd.dir.chmod(0o755)
        for args in (["images"], ["pull", "127.0.0.1:1/team/app:1"], ["ps"]):
            proc = _as_nobody(cd, home, *args)
            assert_failure(proc, "permission denied", hint)

        # what the hint says works: nobody's group may use the socket
        os.chown(sock, 0, 65534)
        proc = _as_nobody(cd, home, "images", "-q")
        assert proc.returncode == 0, proc
        assert proc.stdout == ""
    finally:
        cd.dir.chmod(0o700)
        os.chown(cd.address, 0, 0)
        import shutil

        shutil.rmtree(home, ignore_errors=True)
