"""`pyctl pull` / `push` when the network and the registry misbehave, and with real
authentication: a token-auth registry (Harbor-like) with credentials from a DOCKER_CONFIG and
the CA from a hosts directory, corrupted, cut and throttled downloads through the fault proxy,
redirects to a blob host, a missing tag, and Ctrl-C in the middle of a download."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from integration.conftest import ImageFactory, PyctlRunner, SecureRegistry
from integration.faultproxy import FaultProxy
from integration.helpers import unique_id, wait_until
from integration.images import Archive
from integration.registry_helpers import (
    SNAPSHOT_LABEL_PREFIX,
    Skopeo,
    assert_failure,
    assert_success,
    chain_id,
    content_labels,
    ctr_images,
    docker_config,
    hosts_dir,
    leases,
    sha256,
)
from integration.testbed import CertAuthority, Containerd, Registry


def _active_ingests(containerd: Containerd, namespace: str) -> list[str]:
    lines = containerd.ctr("content", "active", namespace=namespace).stdout.splitlines()[1:]
    return [ln.split()[0] for ln in lines if ln.strip()]


def _assert_no_record(containerd: Containerd, namespace: str) -> None:
    assert ctr_images(containerd, namespace) == {}


# --- a token-auth registry -------------------------------------------------------------------


def test_token_registry_credentials_from_docker_config(
    containerd: Containerd,
    namespace: str,
    pyctl: PyctlRunner,
    token_registry: SecureRegistry,
    image_factory: ImageFactory,
    sk: Skopeo,
    tmp_path: Path,
) -> None:
    ts = token_registry.token_server
    arc = image_factory("example.test/harbor:1", variant_content="token")
    img = arc.single
    host = token_registry.host
    sk.seed(
        arc.path,
        token_registry.ref("team/app", "1"),
        creds=token_registry.creds("alice"),
        cert_dir=token_registry.cert_dir,
    )
    name = token_registry.ref("team/app", "1")
    hosts = ["--hosts-dir", str(hosts_dir(tmp_path / "hosts", {host: token_registry.ca_path}))]
    anonymous = {"DOCKER_CONFIG": str(docker_config(tmp_path / "anon", {}))}
    alice = {
        "DOCKER_CONFIG": str(docker_config(tmp_path / "alice", {host: ("alice", "wonderland")}))
    }
    bob = {"DOCKER_CONFIG": str(docker_config(tmp_path / "bob", {host: ("bob", "builder")}))}

    # no credentials: one line, nothing registered
    ts.clear()
    proc = pyctl(*hosts, "pull", name, namespace=namespace, env=anonymous)
    msg = assert_failure(proc, f"pull {name}:")
    assert re.search(r"unauthorized|denied|authentication required", msg, re.I), msg
    assert f"pyctl login {token_registry.host}" in msg, msg  # says what to do
    _assert_no_record(containerd, namespace)
    assert ts.requests and not any(r.has_authorization for r in ts.requests)

    # alice pulls: credentials from config.json, CA from hosts.toml; token scope pull only
    ts.clear()
    assert assert_success(pyctl(*hosts, "pull", name, namespace=namespace, env=alice))[-1] == name
    assert ctr_images(containerd, namespace)[name].digest == img.manifest_digest
    assert ts.requests and {r.username for r in ts.requests} == {"alice"}
    assert {s for r in ts.requests for s in r.scopes} == {"repository:team/app:pull"}

    # alice pushes it to another repository: pull,push on that one (and pull on the source,
    # for the cross-repository mount)
    ts.clear()
    dest = token_registry.ref("team/alice", "1")
    assert_success(pyctl("tag", name, dest, namespace=namespace))
    proc = pyctl(*hosts, "push", dest, namespace=namespace, env=alice)
    last = assert_success(proc)[-1]
    assert last == f"{dest}: digest: {img.manifest_digest} size: {img.manifest.size}", last
    scopes = {s for r in ts.requests for s in r.scopes}
    assert scopes & {"repository:team/alice:pull,push", "repository:team/alice:push,pull"}
    assert not {s for s in scopes if "push" in s} - {"repository:team/alice:pull,push"}
    assert "repository:team/app:pull" in scopes  # to mount the blobs from where they came
    raw = sk.raw(dest, creds=token_registry.creds("alice"), cert_dir=token_registry.cert_dir)
    assert sha256(raw) == img.manifest_digest

    # bob (pull only) may pull, with the docker-style certs.d directory (ca.crt) this time
    certs_d = ["--hosts-dir", str(token_registry.certs_d)]
    bob_ns = f"{namespace[:50]}-bob"
    try:
        assert assert_success(pyctl(*certs_d, "pull", name, namespace=bob_ns, env=bob))[-1] == name
        assert ctr_images(containerd, bob_ns)[name].digest == img.manifest_digest
        # ... but not push
        ts.clear()
        bobs = token_registry.ref("team/bobs", "1")
        assert_success(pyctl("tag", name, bobs, namespace=bob_ns))
        proc = pyctl(*certs_d, "push", bobs, namespace=bob_ns, env=bob)
        msg = assert_failure(proc, f"push {bobs}:")
        # logged in, but without push rights: denied, not "authentication required"
        assert "denied: requested access to the resource is denied" in msg, msg
        assert ts.requests and {r.username for r in ts.requests} == {"bob"}
        assert any("repository:team/bobs:pull,push" in r.scopes for r in ts.requests)
        assert token_registry.tags("team/bobs") == []
    finally:
        containerd.clean_namespace(bob_ns)


# --- faults ----------------------------------------------------------------------------------


@pytest.fixture
def pushed_app(registry: Registry, image_factory: ImageFactory, sk: Skopeo) -> Archive:
    """A two-layer image in the plain registry as ``team/app:1`` (conftest's ``seeded`` holds
    ``tiny``, a one-layer image)."""
    arc = image_factory("example.test/faults:1", variant_content="faults")
    sk.seed(arc.path, registry.ref("team/app", "1"))
    return arc


def test_corrupted_layer_fails_cleanly_and_does_not_poison_a_retry(
    containerd: Containerd,
    namespace: str,
    pyctl: PyctlRunner,
    fault_proxy: FaultProxy,
    pushed_app: Archive,
) -> None:
    img = pushed_app.single
    layer = img.biggest_layer.digest
    name = fault_proxy.ref("team/app", "1")
    fault_proxy.corrupt(1000, method="GET", path=f"/blobs/{layer}$")

    proc = pyctl("pull", name, namespace=namespace)
    assert_failure(proc, f"pull {name}:", layer, "does not match its digest")
    _assert_no_record(containerd, namespace)
    assert layer not in content_labels(containerd, namespace)
    # the bad bytes are not kept as an ingest a retry would resume from
    assert _active_ingests(containerd, namespace) == []

    # a second attempt, the network healthy again, works
    proc = pyctl("pull", name, namespace=namespace)
    assert assert_success(proc)[-1] == name
    assert ctr_images(containerd, namespace)[name].digest == img.manifest_digest
    labels = content_labels(containerd, namespace)
    assert labels[img.config_digest][SNAPSHOT_LABEL_PREFIX + containerd.snapshotter] == (
        chain_id(img.diff_ids)
    )
    assert fault_proxy.blob_gets(layer) == 2


def test_stale_bad_partial_ingest_is_restarted_from_scratch(
    containerd: Containerd,
    namespace: str,
    pyctl: PyctlRunner,
    fault_proxy: FaultProxy,
    pushed_app: Archive,
) -> None:
    """An earlier attempt left a partial ingest with a bad byte in it (containerd keeps
    partial ingests so that downloads resume). The pull resumes it, containerd refuses the
    digest at commit, and pyctl starts that blob over instead of failing for good."""
    img = pushed_app.single
    layer = img.biggest_layer
    bad = bytearray(layer.data[:300_000])
    bad[1000] ^= 0xFF
    ingest = subprocess.run(
        [
            containerd.binaries.ctr,
            "-a",
            containerd.address,
            "-n",
            namespace,
            "content",
            "ingest",
            "--expected-size",
            str(layer.size),
            "--expected-digest",
            layer.digest,
            f"layer-{layer.digest}",
        ],
        input=bytes(bad),
        env=containerd.client_env(),
        capture_output=True,
        check=False,
        timeout=30,
    )
    assert ingest.returncode != 0  # short input: the ingest stays, 300000 bytes in
    assert _active_ingests(containerd, namespace) == [f"layer-{layer.digest}"]

    name = fault_proxy.ref("team/app", "1")
    assert assert_success(pyctl("pull", name, namespace=namespace))[-1] == name
    assert ctr_images(containerd, namespace)[name].digest == img.manifest_digest
    assert fault_proxy.ranges(layer.digest) == ["bytes=300000-", None]
    assert _active_ingests(containerd, namespace) == []


@pytest.mark.parametrize("cut", ["truncate", "reset"])
def test_dropped_connection_mid_blob_is_resumed_with_range(
    containerd: Containerd,
    namespace: str,
    pyctl: PyctlRunner,
    fault_proxy: FaultProxy,
    pushed_app: Archive,
    cut: str,
) -> None:
    img = pushed_app.single
    layer = img.biggest_layer.digest
    name = fault_proxy.ref("team/app", "1")
    getattr(fault_proxy, cut)(300_000, method="GET", path=f"/blobs/{layer}$")

    assert assert_success(pyctl("pull", name, namespace=namespace))[-1] == name
    assert ctr_images(containerd, namespace)[name].digest == img.manifest_digest
    ranges = fault_proxy.ranges(layer)
    assert len(ranges) == 2 and ranges[0] is None, ranges
    if cut == "truncate":
        # everything that arrived before the cut is kept (give or take one socket read)
        m = re.fullmatch(r"bytes=(\d+)-", ranges[1] or "")
        assert m and 200_000 < int(m[1]) <= 300_000, ranges
        assert [r.status for r in fault_proxy.blob_requests(layer)] == [200, 206]
    elif ranges[1] is not None:
        # a RST may discard what was still unread in the socket: the resume point is
        # wherever the client had got to (almost always > 0)
        m = re.fullmatch(r"bytes=(\d+)-", ranges[1])
        assert m and 0 < int(m[1]) <= 300_000, ranges


def test_dropped_connection_while_reading_a_manifest_is_retried(
    containerd: Containerd,
    namespace: str,
    pyctl: PyctlRunner,
    fault_proxy: FaultProxy,
    pushed_app: Archive,
) -> None:
    img = pushed_app.single
    name = fault_proxy.ref("team/app", "1")
    fault_proxy.reset(100, method="GET", path=f"/manifests/{img.manifest_digest}$")
    fault_proxy.truncate(100, method="GET", path=f"/blobs/{img.config_digest}$")

    assert assert_success(pyctl("pull", name, namespace=namespace))[-1] == name
    assert ctr_images(containerd, namespace)[name].digest == img.manifest_digest
    assert len(fault_proxy.requests_for("GET", f"/manifests/{img.manifest_digest}$")) == 2
    assert fault_proxy.blob_gets(img.config_digest) == 2


def test_503_then_429_with_retry_after_are_retried(
    containerd: Containerd,
    namespace: str,
    pyctl: PyctlRunner,
    fault_proxy: FaultProxy,
    pushed_app: Archive,
) -> None:
    img = pushed_app.single
    layer = img.biggest_layer.digest
    name = fault_proxy.ref("team/app", "1")
    fault_proxy.status(503, method="GET", path=f"/blobs/{layer}$")
    fault_proxy.status(
        429, headers={"Retry-After": "1"}, method="GET", path=f"/blobs/{layer}$", nth=2
    )

    assert assert_success(pyctl("pull", name, namespace=namespace))[-1] == name
    assert ctr_images(containerd, namespace)[name].digest == img.manifest_digest
    gets = fault_proxy.blob_requests(layer)
    assert [r.status for r in gets] == [503, 429, 200]
    assert gets[2].time - gets[1].time >= 0.9, "Retry-After: 1 was not honoured"


def test_404_tag_is_one_line_not_found(
    containerd: Containerd,
    namespace: str,
    pyctl: PyctlRunner,
    fault_proxy: FaultProxy,
    pushed_app: Archive,
) -> None:
    # what is missing, and where: a repository the registry lacks, a tag it lacks (with the
    # tags it has), and bare 404s without a body (injected) that say neither
    at = f"at {fault_proxy.url}"
    for ref, want in (
        (fault_proxy.ref("team/absent", "1"), f"repository team/absent not found {at}"),
        (
            fault_proxy.ref("team/app", "nope"),
            f"tag nope not found in repository team/app {at} (its tags: 1)",
        ),
    ):
        proc = pyctl("pull", ref, namespace=namespace)
        assert assert_failure(proc) == f"pull {ref}: {want}"
    fault_proxy.status(404, body=b"", path="/v2/team/app/manifests/1$", times=None)
    fault_proxy.status(404, body=b"", path="/v2/team/app/tags/list$", times=None)
    ref = fault_proxy.ref("team/app", "1")
    proc = pyctl("pull", ref, namespace=namespace)
    assert assert_failure(proc) == f"pull {ref}: tag 1 or repository team/app not found {at}"
    # by digest
    missing = "sha256:" + "0" * 64
    ref = f"{fault_proxy.host}/team/app@{missing}"
    proc = pyctl("pull", ref, namespace=namespace)
    assert assert_failure(proc) == (
        f"pull {ref}: manifest {missing} not found in repository team/app {at}"
    )
    # a reference that gets normalized says what it became
    short = f"{fault_proxy.host}/team/app"
    proc = pyctl("pull", short, namespace=namespace)
    assert assert_failure(proc) == (
        f"pull {short}: {short}:latest: tag latest not found in repository team/app {at}"
    )
    assert leases(containerd, namespace) == []  # a pull that found nothing keeps nothing
    assert fault_proxy.blob_requests() == []
    _assert_no_record(containerd, namespace)


# --- redirects to a blob host ------------------------------------------------------------------


@pytest.fixture
def auth_proxy(
    token_registry: SecureRegistry, cert_authority: CertAuthority
) -> Iterator[FaultProxy]:
    """An HTTPS fault proxy in front of the token registry (so faults can be injected between
    an authenticating client and an auth-requiring registry)."""
    tls = cert_authority.issue_server_cert(f"auth-proxy-{uuid.uuid4().hex[:8]}")
    with FaultProxy(token_registry, tls=tls) as proxy:
        yield proxy


def test_blob_redirect_to_another_host_carries_no_authorization(
    containerd: Containerd,
    namespace: str,
    pyctl: PyctlRunner,
    token_registry: SecureRegistry,
    auth_proxy: FaultProxy,
    registry: Registry,
    blob_host: FaultProxy,
    image_factory: ImageFactory,
    sk: Skopeo,
    tmp_path: Path,
) -> None:
    """The token registry answers blob GETs with a redirect to a CDN-like blob host (here: a
    proxy in front of a plain registry holding the same blobs). The client must follow it
    without the registry's bearer token."""
    arc = image_factory("example.test/cdn:1", variant_content="redirect")
    img = arc.single
    sk.seed(
        arc.path,
        token_registry.ref("team/cdn", "1"),
        creds=token_registry.creds("alice"),
        cert_dir=token_registry.cert_dir,
    )
    sk.seed(arc.path, registry.ref("team/cdn", "1"))
    auth_proxy.redirect(blob_host.url, method="GET", path=r"/blobs/sha256:", times=None)

    name = auth_proxy.ref("team/cdn", "1")
    hosts = hosts_dir(tmp_path / "hosts", {auth_proxy.host: token_registry.ca_path})
    cfg = docker_config(tmp_path / "cfg", {auth_proxy.host: ("alice", "wonderland")})
    proc = pyctl(
        "--hosts-dir",
        str(hosts),
        "pull",
        name,
        namespace=namespace,
        env={"DOCKER_CONFIG": str(cfg)},
    )
    assert assert_success(proc)[-1] == name
    assert ctr_images(containerd, namespace)[name].digest == img.manifest_digest

    blobs = {img.config_digest, *img.layer_digests}
    redirected = [r for r in auth_proxy.blob_requests() if r.status == 302]
    assert {r.path.rsplit("/", 1)[1] for r in redirected} == blobs
    assert {r.auth_scheme for r in redirected} == {"bearer"}, "the registry got no token"
    assert set(blob_host.blob_get_counts()) == blobs
    assert not blob_host.authorization_seen(), "the token leaked to the blob host"


# --- Ctrl-C ------------------------------------------------------------------------------------


BIG = 32 << 20


@pytest.fixture(scope="module")
def big_image(image_factory: ImageFactory) -> Archive:
    """busybox plus a layer of 32 MiB of random bytes (incompressible)."""
    return image_factory("example.test/big:1", files={"big.bin": os.urandom(BIG)})


@pytest.mark.parametrize("downloads", ["3", "1"], ids=["pool", "serial"])
def test_ctrl_c_mid_download_exits_130_and_leaves_no_image(
    containerd: Containerd,
    namespace: str,
    pyctl: PyctlRunner,
    registry: Registry,
    fault_proxy: FaultProxy,
    big_image: Archive,
    sk: Skopeo,
    downloads: str,
) -> None:
    """SIGINT while the big layer is stalled mid-transfer (``serial``: the download runs in
    the main thread; ``pool``: in worker threads while the main thread waits)."""
    img = big_image.single
    big = img.biggest_layer.digest
    assert big == img.layer_digests[-1]
    sk.seed(big_image.path, registry.ref("team/big", "1"))
    name = fault_proxy.ref("team/big", "1")
    stall_at = 4 << 20
    fault_proxy.stall(60, after_bytes=stall_at, method="GET", path=f"/blobs/{big}$")

    proc = pyctl.start("pull", "--max-concurrent-downloads", downloads, name, namespace=namespace)
    try:
        wait_until(
            "the big layer is mid-transfer",
            lambda: any(r.body_bytes_out >= stall_at for r in fault_proxy.blob_requests(big)),
            timeout=30,
        )
        interrupted = time.monotonic()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert time.monotonic() - interrupted < 10, "pyctl took too long to stop"
    assert proc.returncode == 130, (proc.returncode, stdout, stderr)
    assert "Traceback" not in stderr, stderr
    assert stderr.splitlines()[-1] == "pyctl: interrupted", stderr
    assert stdout == ""
    _assert_no_record(containerd, namespace)

    # run it again: it completes and the image runs
    fault_proxy.clear_faults()
    assert assert_success(pyctl("pull", name, namespace=namespace))[-1] == name
    assert ctr_images(containerd, namespace)[name].digest == img.manifest_digest
    run = containerd.ctr(
        "run",
        "--rm",
        name,
        unique_id("big"),
        "sh",
        "-c",
        "wc -c < /big.bin",
        namespace=namespace,
    )
    assert run.stdout.strip() == str(BIG)
