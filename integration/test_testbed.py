"""Proof that the test bed works: containerd, runc, images, registry, TLS, skopeo."""

from __future__ import annotations

import contextlib
import datetime as _dt
import glob
import hashlib
import json
import os
import shutil
import signal
import ssl
import tarfile
import time
import uuid
from pathlib import Path

import pytest

from integration import images
from integration.conftest import BUSYBOX_NAME, ImageFactory, PyctlRunner
from integration.images import Archive, import_into
from integration.testbed import (
    CertAuthority,
    Containerd,
    ContainerdBinaries,
    HtpasswdAuth,
    Registry,
    TestbedError,
    alive,
    mounts_under,
    remove_cgroups,
    skopeo,
)


def _cid() -> str:
    return "c-" + uuid.uuid4().hex[:10]


# --- containerd -------------------------------------------------------------------------------


# what the tests use, in every containerd version the bed runs (1.6, 1.7, 2.x)
GRPC_SERVICES = ("containers", "content", "diff", "events", "images", "introspection")
GRPC_SERVICES += ("leases", "namespaces", "snapshots", "tasks", "version")
NEEDED_PLUGINS = [
    *[("io.containerd.grpc.v1", id_) for id_ in GRPC_SERVICES],
    ("io.containerd.runtime.v2", "task"),
    ("io.containerd.gc.v1", "scheduler"),
    ("io.containerd.metadata.v1", "bolt"),
]


def _versions(ctr_version: str) -> dict[str, str]:
    """``ctr version``: section ("Client", "Server") -> its Version line."""
    out, section = {}, ""
    for line in ctr_version.splitlines():
        if line.endswith(":") and not line.startswith(" "):
            section = line[:-1]
        elif line.strip().startswith("Version:"):
            out[section] = line.split(":", 1)[1].strip()
    return out


def test_containerd_answers(containerd: Containerd) -> None:
    """The daemon and ctr are the build the bed was given ($PYCTL_TEST_CONTAINERD_BIN or
    PATH), and every plugin the tests need loaded, CRI included (images in k8s.io)."""
    versions = _versions(containerd.ctr("version").stdout)
    assert versions["Client"] == versions["Server"], versions
    assert containerd.binaries.version_string in versions["Server"], versions
    assert os.path.exists(containerd.address)
    assert containerd.snapshotter in ("overlayfs", "native")
    plugins = {(p.type, p.id): p.status for p in containerd.plugins()}
    needed = [
        *NEEDED_PLUGINS,
        ("io.containerd.snapshotter.v1", containerd.snapshotter),
        *containerd.cri_plugins,
    ]
    assert {p: plugins.get(p) for p in needed} == dict.fromkeys(needed, "ok")
    assert containerd.shim_pids() == []
    sockets = {p.name for p in containerd.dir.iterdir() if p.is_socket()}
    if containerd.version >= (2, 0, 0):
        # 2.x's CRI starts NRI; its socket is the bed's, not /var/run/nri/nri.sock
        assert plugins[("io.containerd.nri.v1", "nri")] == "ok"
        assert sockets == {"containerd.sock", "containerd.sock.ttrpc", "nri.sock"}
    else:
        assert sockets == {"containerd.sock", "containerd.sock.ttrpc"}


def test_containerd_without_cri() -> None:
    """``cri=False`` disables every CRI plugin of the version (three in 2.x)."""
    with Containerd(cri=False) as cd:
        plugins = {(p.type, p.id): p.status for p in cd.plugins()}
        assert [p for p in cd.cri_plugins if plugins.get(p) == "ok"] == []
        assert all((t, i) in plugins for t, i in NEEDED_PLUGINS)
        sockets = {p.name for p in cd.dir.iterdir() if p.is_socket()}
        assert sockets == {"containerd.sock", "containerd.sock.ttrpc"}


def test_containerd_binaries_from_a_directory(tmp_path: Path) -> None:
    """$PYCTL_TEST_CONTAINERD_BIN must hold all three programs; one missing is named."""
    real = ContainerdBinaries.find()
    (tmp_path / "containerd").symlink_to(real.containerd)
    (tmp_path / "ctr").symlink_to(real.ctr)
    with pytest.raises(TestbedError, match=f"{tmp_path}: no executable containerd-shim-runc-v2"):
        ContainerdBinaries.find(tmp_path)
    shim = shutil.which("containerd-shim-runc-v2", path=real.daemon_env()["PATH"])
    assert shim is not None
    (tmp_path / "containerd-shim-runc-v2").symlink_to(shim)
    found = ContainerdBinaries.find(tmp_path)
    assert (found.ctr, found.bin_dir, found.version) == (
        str(tmp_path / "ctr"),
        str(tmp_path),
        real.version,
    )
    assert found.daemon_env()["PATH"].split(os.pathsep)[0] == str(tmp_path)


def test_fresh_namespace_is_empty(containerd: Containerd, namespace: str) -> None:
    assert namespace not in containerd.namespaces()
    assert containerd.images(namespace) == []


# --- images -----------------------------------------------------------------------------------


def test_archive_is_deterministic(tmp_path: Path) -> None:
    a = images.build_image(variant_content="x")
    b = images.build_image(variant_content="x")
    c = images.build_image(variant_content="y")
    assert a.manifest.digest == b.manifest.digest
    assert c.manifest.digest != a.manifest.digest
    assert c.layers[0].digest == a.layers[0].digest  # shared busybox layer
    p1 = images.write_oci_archive(tmp_path / "1.tar", a, "example.test/a:1").path
    p2 = images.write_oci_archive(tmp_path / "2.tar", b, "example.test/a:1").path
    assert p1.read_bytes() == p2.read_bytes()
    cfg = a.config_json
    assert cfg["architecture"] == images.host_arch() and cfg["os"] == "linux"
    assert cfg["config"]["Cmd"] == ["/bin/sh"]
    assert cfg["rootfs"]["diff_ids"] == list(a.diff_ids)
    with tarfile.open(p1) as tf:
        names = tf.getnames()
        index = json.load(tf.extractfile("index.json"))  # type: ignore[arg-type]
        for blob in a.blobs():
            member = tf.extractfile(f"blobs/sha256/{blob.hex}")
            assert member is not None
            assert "sha256:" + hashlib.sha256(member.read()).hexdigest() == blob.digest
    assert "oci-layout" in names
    (entry,) = index["manifests"]
    assert entry["digest"] == a.manifest.digest
    assert entry["annotations"] == {
        "io.containerd.image.name": "example.test/a:1",
        "org.opencontainers.image.ref.name": "1",
    }


def test_busybox_import_and_list(
    containerd: Containerd, namespace: str, busybox_image: Archive
) -> None:
    created = import_into(containerd, busybox_image, namespace=namespace)
    assert created == [BUSYBOX_NAME]
    assert containerd.ctr("images", "ls", "-q", namespace=namespace).stdout.split() == [
        BUSYBOX_NAME
    ]
    spec = busybox_image.single
    (row,) = containerd.lines("images", "ls", namespace=namespace)[1:]
    assert spec.manifest.digest in row and "application/vnd.oci.image.manifest.v1+json" in row
    content = containerd.ctr("content", "ls", namespace=namespace).stdout
    for d in (spec.manifest.digest, spec.config.digest, *spec.layer_digests):
        assert d in content
    # unpacked into the bed's snapshotter: the chain ID of a single layer is its diff_id
    snaps = containerd.ctr("snapshots", "ls", namespace=namespace).stdout
    assert spec.diff_ids[0] in snaps


def test_run_echo_hello(containerd: Containerd, namespace: str, busybox_image: Archive) -> None:
    import_into(containerd, busybox_image, namespace=namespace)
    res = containerd.ctr(
        "run", "--rm", BUSYBOX_NAME, _cid(), "echo", "hello", namespace=namespace, timeout=60
    )
    assert res.stdout == "hello\n"


def test_run_detached_task(containerd: Containerd, namespace: str, busybox_image: Archive) -> None:
    import_into(containerd, busybox_image, namespace=namespace)
    cid = _cid()
    containerd.ctr("run", "-d", BUSYBOX_NAME, cid, "sleep", "300", namespace=namespace)
    rows = containerd.lines("tasks", "ls", namespace=namespace)
    assert any(r.split()[0] == cid and r.split()[-1] == "RUNNING" for r in rows), rows
    # the shim is the one of the bed's build: the first on the daemon's PATH
    shim = shutil.which("containerd-shim-runc-v2", path=containerd.binaries.daemon_env()["PATH"])
    assert shim is not None
    exes = {os.path.realpath(f"/proc/{pid}/exe") for pid in containerd.shim_pids()}
    assert exes == {os.path.realpath(shim)}
    if containerd.snapshotter == "overlayfs":
        rootfs = [m for m in mounts_under(containerd.state) if m.endswith(f"/{cid}/rootfs")]
        assert rootfs, "the running container's overlay rootfs should be mounted"
    # a second process via exec
    out = containerd.ctr(
        "tasks", "exec", "--exec-id", "e1", cid, "cat", "/etc/passwd", namespace=namespace
    ).stdout
    assert out.startswith("root:x:0:0:")
    containerd.ctr("tasks", "kill", "-s", "SIGKILL", cid, namespace=namespace)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = containerd.lines("tasks", "ls", namespace=namespace)
        if any(r.split()[0] == cid and r.split()[-1] == "STOPPED" for r in rows):
            break
        time.sleep(0.05)
    containerd.ctr("tasks", "rm", cid, namespace=namespace)
    containerd.ctr("containers", "rm", cid, namespace=namespace)
    assert containerd.lines("tasks", "ls", "-q", namespace=namespace) == []
    assert not [m for m in mounts_under(containerd.state) if f"/{cid}/" in m + "/"]


def test_namespace_cleanup_removes_running_containers(
    containerd: Containerd, busybox_image: Archive
) -> None:
    ns = f"it-cleanup-{uuid.uuid4().hex[:8]}"
    import_into(containerd, busybox_image, namespace=ns)
    containerd.ctr("run", "-d", BUSYBOX_NAME, _cid(), "sleep", "300", namespace=ns)
    containerd.clean_namespace(ns)
    assert ns not in containerd.namespaces()
    assert not [m for m in mounts_under(containerd.state) if f"/{ns}/" in m]
    assert glob.glob(f"/sys/fs/cgroup/*/{ns}") == []
    assert not os.path.exists(f"/run/containerd/runc/{ns}")


@pytest.mark.parametrize("crash", [False, True], ids=["graceful", "containerd-killed"])
def test_stop_kills_everything(busybox_image: Archive, crash: bool) -> None:
    """stop() with a running container: no shim, no container process, no mount, no dir."""
    ns = f"it-stop-{uuid.uuid4().hex[:8]}"
    cd = Containerd().start()
    try:
        import_into(cd, busybox_image, namespace=ns)
        cid = _cid()
        cd.ctr("run", "-d", BUSYBOX_NAME, cid, "sleep", "300", namespace=ns)
        (shim,) = cd.shim_pids()
        (row,) = cd.lines("tasks", "ls", namespace=ns)[1:]
        task_pid = int(row.split()[1])
        if crash:
            assert cd.pid is not None
            os.kill(cd.pid, signal.SIGKILL)
    finally:
        cd.stop()
    for pid in (shim, task_pid):
        assert not alive(pid), f"pid {pid} survived stop()"
    assert mounts_under(cd.dir) == []
    assert not cd.dir.exists()
    remove_cgroups(ns)
    with contextlib.suppress(OSError):
        os.rmdir(f"/run/containerd/runc/{ns}")


def test_native_snapshotter(busybox_image: Archive) -> None:
    """The fallback snapshotter works too (used automatically if overlayfs is unusable)."""
    ns = f"it-native-{uuid.uuid4().hex[:8]}"
    with Containerd(snapshotter="native") as cd:
        assert cd.snapshotter == "native"
        assert cd.client_env()["CONTAINERD_SNAPSHOTTER"] == "native"
        import_into(cd, busybox_image, namespace=ns)
        out = cd.ctr("run", "--rm", BUSYBOX_NAME, _cid(), "echo", "hello", namespace=ns).stdout
        assert out == "hello\n"
        cd.clean_namespace(ns)


def test_multi_platform_index(
    containerd: Containerd, namespace: str, image_factory: ImageFactory
) -> None:
    arc = image_factory("example.test/multi:1", multi_platform=True, media="docker")
    idx = arc.index
    assert [str(p) for p in idx.platforms] == [
        str(images.HOST_PLATFORM),
        str(images.other_platform()),
        "linux/arm/v7",
    ]
    assert import_into(containerd, arc, namespace=namespace) == ["example.test/multi:1"]
    (row,) = containerd.lines("images", "ls", namespace=namespace)[1:]
    assert idx.index_digest in row
    assert "application/vnd.docker.distribution.manifest.list.v2+json" in row
    for plat in ("linux/amd64", "linux/arm64", "linux/arm/v7"):
        assert plat in row
    content = containerd.ctr("content", "ls", namespace=namespace).stdout
    for m in idx.manifests:
        assert m.manifest.digest in content and m.config.digest in content
    res = containerd.ctr(
        "run", "--rm", "example.test/multi:1", _cid(), "echo", "hello", namespace=namespace
    )
    assert res.stdout == "hello\n"


def test_import_naming_semantics(
    containerd: Containerd, namespace: str, image_factory: ImageFactory
) -> None:
    """Documents ctr 1.6 import naming (see images.import_into)."""
    # io.containerd.image.name is kept verbatim (not normalized)
    arc = image_factory("busybox:1", variant_content="naming-1")
    assert import_into(containerd, arc, namespace=namespace) == ["busybox:1"]
    # only org.opencontainers.image.ref.name: prefixed with import-<date>
    arc2 = image_factory("example.test/x:v2", variant_content="n2", image_name_annotation=False)
    created = import_into(containerd, arc2, namespace=namespace)
    today = _dt.date.today().isoformat()  # ctr uses local time
    assert created == [f"import-{today}:v2"]
    # name= re-tags the first archive name
    arc3 = image_factory("example.test/y:1", variant_content="n3")
    created = import_into(containerd, arc3, "example.test/z:2", namespace=namespace)
    assert created == ["example.test/y:1", "example.test/z:2"]


# --- registry ---------------------------------------------------------------------------------


def test_registry_answers(registry: Registry) -> None:
    r = registry.request("GET", "/v2/")
    assert r.status == 200
    assert r.headers.get("Docker-Distribution-Api-Version") == "registry/2.0"
    assert registry.url == f"http://{registry.host}"
    assert registry.catalog() == []


def test_registry_htpasswd_auth() -> None:
    auth = HtpasswdAuth({"alice": "s3cret"})
    with Registry(auth=auth) as reg:
        anon = reg.request("GET", "/v2/", authenticate=False)
        assert anon.status == 401
        assert anon.headers.get("Www-Authenticate", "").startswith("Basic")
        assert reg.request("GET", "/v2/").status == 200
        bad = reg.request(
            "GET", "/v2/", authenticate=False, headers={"Authorization": "Basic YWxpY2U6eA=="}
        )
        assert bad.status == 401


def test_tls_registry(cert_authority: CertAuthority) -> None:
    server = cert_authority.issue_server_cert("registry")
    with Registry(tls=server) as reg:
        assert reg.url.startswith("https://127.0.0.1:")
        ctx = ssl.create_default_context(cafile=str(cert_authority.cert_path))
        assert reg.request("GET", "/v2/", context=ctx).status == 200
        with pytest.raises(ssl.SSLCertVerificationError):
            reg.request("GET", "/v2/", context=ssl.create_default_context())


def test_mutual_tls_registry(cert_authority: CertAuthority) -> None:
    server = cert_authority.issue_server_cert("mtls-registry")
    client = cert_authority.issue_client_cert("mtls-client")
    with Registry(tls=server, client_ca=cert_authority.cert_path, client_cert=client) as reg:
        assert reg.request("GET", "/v2/").status == 200
        with pytest.raises((ssl.SSLError, ConnectionError)):
            reg.request("GET", "/v2/", context=cert_authority.ssl_context())


def test_skopeo_copy_into_registry(
    registry: Registry, busybox_image: Archive, image_factory: ImageFactory
) -> None:
    spec = busybox_image.single
    dest = f"docker://{registry.ref('library/busybox', 'latest')}"
    skopeo("copy", "--dest-tls-verify=false", f"oci-archive:{busybox_image.path}", dest)
    raw = skopeo("inspect", "--raw", "--tls-verify=false", dest).stdout
    assert "sha256:" + hashlib.sha256(raw.encode()).hexdigest() == spec.manifest.digest
    assert registry.tags("library/busybox") == ["latest"]
    r = registry.manifest("library/busybox", "latest")
    assert r.headers.get("Docker-Content-Digest") == spec.manifest.digest

    # a multi-platform index, all platforms
    multi = image_factory("example.test/multi:2", multi_platform=True, variant_content="sk")
    idx = multi.index
    dest2 = f"docker://{registry.ref('multi', '2')}"
    skopeo("copy", "--all", "--dest-tls-verify=false", f"oci-archive:{multi.path}", dest2)
    raw2 = skopeo("inspect", "--raw", "--tls-verify=false", dest2).stdout
    assert "sha256:" + hashlib.sha256(raw2.encode()).hexdigest() == idx.index_digest
    assert sorted(registry.catalog()) == ["library/busybox", "multi"]

    # deletes are enabled
    d = registry.request("DELETE", f"/v2/library/busybox/manifests/{spec.manifest.digest}")
    assert d.status == 202


# --- pyctl fixture ----------------------------------------------------------------------------


def test_pyctl_fixture_environment(
    pyctl: PyctlRunner, containerd: Containerd, namespace: str
) -> None:
    """Only the plumbing: the CLI itself is tested elsewhere."""
    env = pyctl.env(namespace)
    assert env["CONTAINERD_ADDRESS"] == containerd.address
    assert env["CONTAINERD_SNAPSHOTTER"] == containerd.snapshotter
    assert env["CONTAINERD_NAMESPACE"] == namespace
    assert env["HOME"] == str(pyctl.home) and "PYCTL_CONFIG" not in env
    assert "CONTAINERD_NAMESPACE" not in pyctl.env()
    assert pyctl.bind(namespace).env()["CONTAINERD_NAMESPACE"] == namespace
