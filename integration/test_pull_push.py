"""`pyctl pull` and `pyctl push` against a real containerd and a real registry: what the user
sees (exit code, stdout, the one-line error) and what containerd and the registry then hold
(image records, content labels, snapshots, manifests, the requests the registry received)."""

from __future__ import annotations

import re
from collections.abc import Callable

from integration import images
from integration.conftest import ImageFactory, PyctlRunner
from integration.faultproxy import FaultProxy
from integration.helpers import assert_error, json_lines, unique_id, wait_until
from integration.images import ImageSpec
from integration.registry_helpers import (
    SNAPSHOT_LABEL_PREFIX,
    SOURCE_LABEL,
    UNCOMPRESSED,
    Skopeo,
    assert_failure,
    assert_success,
    chain_id,
    chain_ids,
    content_labels,
    ctr_images,
    leases,
    sha256,
    snapshot_info,
    snapshot_keys,
)
from integration.testbed import Containerd, Registry

HOST = str(images.HOST_PLATFORM)
OTHER = str(images.other_platform())
PUSH_LINE = re.compile(
    r"^(?P<ref>\S+): digest: (?P<digest>sha256:[0-9a-f]{64}) size: (?P<size>\d+)$"
)


def _image_rows(pyctl: PyctlRunner, ns: str) -> list[tuple[str, str, str]]:
    """``pyctl images``: (Repository:Tag, Platform, Size) per row."""
    proc = pyctl("images", "--format", "json", namespace=ns)
    rows = json_lines("\n".join(assert_success(proc)))
    return sorted((f"{r['Repository']}:{r['Tag']}", r["Platform"], r["Size"]) for r in rows)


# --- pull ----------------------------------------------------------------------------------------


def test_pull_records_labels_unpacks_and_runs(
    containerd: Containerd,
    namespace: str,
    pyctl: PyctlRunner,
    registry: Registry,
    image_factory: ImageFactory,
    sk: Skopeo,
    more_namespaces: Callable[[str], str],
) -> None:
    arc = image_factory("example.test/app:1", variant_content="pull-basic")
    img = arc.single
    assert len(img.layers) == 2
    sk.seed(arc.path, registry.ref("team/app", "latest"))
    name = f"{registry.host}/team/app:latest"

    # no tag given: the reference is normalized to :latest; the last stdout line says so
    proc = pyctl("pull", f"{registry.host}/team/app", namespace=namespace)
    out = assert_success(proc)
    assert out == [name], proc.stdout
    assert f"Digest: {img.manifest_digest}" in proc.stderr
    assert f"Status: Downloaded newer image for {name}" in proc.stderr

    # the record
    records = ctr_images(containerd, namespace)
    assert set(records) == {name}
    assert records[name].digest == img.manifest_digest
    assert records[name].media_type == images.OCI.manifest
    assert records[name].platforms == HOST

    # the content and its labels
    labels = content_labels(containerd, namespace)
    assert set(labels) == {img.manifest_digest, img.config_digest, *img.layer_digests}
    manifest = labels[img.manifest_digest]
    assert manifest["containerd.io/gc.ref.content.config"] == img.config_digest
    assert manifest["containerd.io/gc.ref.content.l.0"] == img.layer_digests[0]
    assert manifest["containerd.io/gc.ref.content.l.1"] == img.layer_digests[1]
    for digest in labels:
        assert labels[digest][SOURCE_LABEL] == "team/app", (digest, labels[digest])
    for layer, diff_id in zip(img.layer_digests, img.diff_ids, strict=True):
        assert labels[layer][UNCOMPRESSED] == diff_id
    top = chain_id(img.diff_ids)
    snap_label = SNAPSHOT_LABEL_PREFIX + containerd.snapshotter
    assert labels[img.config_digest][snap_label] == top

    # the snapshots: the chain, committed, the top one on the bottom one
    assert sorted(snapshot_keys(containerd, namespace)) == sorted(chain_ids(img.diff_ids))
    info = snapshot_info(containerd, namespace, top)
    assert info["Kind"] == "Committed" and info["Parent"] == img.diff_ids[0]
    # pyctl's lease is gone: only the labels keep the image
    assert leases(containerd, namespace) == []

    # the image runs (both layers are in the rootfs)
    run = containerd.ctr(
        "run",
        "--rm",
        name,
        unique_id("pulled"),
        "sh",
        "-c",
        "echo hello; cat /variant.txt",
        namespace=namespace,
    )
    assert run.stdout == "hello\npull-basic"

    # -q: only the reference, nothing on stderr (in a fresh namespace: a real download)
    quiet_ns = more_namespaces("quiet")
    proc = pyctl("pull", "-q", name, namespace=quiet_ns)
    assert proc.returncode == 0 and proc.stdout == name + "\n" and proc.stderr == "", proc
    assert ctr_images(containerd, quiet_ns)[name].digest == img.manifest_digest


def test_pull_multi_platform_index(
    containerd: Containerd,
    namespace: str,
    pyctl: PyctlRunner,
    registry: Registry,
    image_factory: ImageFactory,
    sk: Skopeo,
    more_namespaces: Callable[[str], str],
) -> None:
    arc = image_factory("example.test/multi:1", multi_platform=True, variant_content="mp")
    idx = arc.index
    sk.seed(arc.path, registry.ref("team/multi", "1"), all_platforms=True)
    name = registry.ref("team/multi", "1")
    host, other = idx.for_platform(HOST), idx.for_platform(OTHER)
    snap_label = SNAPSHOT_LABEL_PREFIX + containerd.snapshotter

    def blobs(img: ImageSpec) -> set[str]:
        return {img.manifest_digest, img.config_digest, *img.layer_digests}

    # default: the host platform only, unpacked
    assert assert_success(pyctl("pull", name, namespace=namespace))[-1] == name
    assert ctr_images(containerd, namespace)[name].digest == idx.index_digest
    labels = content_labels(containerd, namespace)
    assert set(labels) == {idx.index_digest} | blobs(host)
    index_labels = labels[idx.index_digest]
    for i, m in enumerate(idx.manifests):  # every child is referenced, fetched or not
        assert index_labels[f"containerd.io/gc.ref.content.m.{i}"] == m.manifest_digest
    assert index_labels[SOURCE_LABEL] == "team/multi"
    assert labels[host.config_digest][snap_label] == chain_id(host.diff_ids)
    ((row_name, row_platform, row_size),) = _image_rows(pyctl, namespace)
    assert (row_name, row_platform) == (name, HOST) and row_size != "0B"
    assert sorted(snapshot_keys(containerd, namespace)) == sorted(chain_ids(host.diff_ids))

    # --platform OTHER: only that one; not unpacked (auto = the platforms this host runs)
    ns_other = more_namespaces("other")
    assert_success(pyctl("pull", "--platform", OTHER, name, namespace=ns_other))
    labels = content_labels(containerd, ns_other)
    assert set(labels) == {idx.index_digest} | blobs(other)
    assert snapshot_keys(containerd, ns_other) == []
    assert snap_label not in labels[other.config_digest]
    assert _image_rows(pyctl, ns_other) == [(name, OTHER, "0B")]

    # --all-platforms: everything; the host platform is unpacked
    ns_all = more_namespaces("all")
    assert_success(pyctl("pull", "--all-platforms", name, namespace=ns_all))
    labels = content_labels(containerd, ns_all)
    assert set(labels) == {idx.index_digest}.union(*(blobs(m) for m in idx.manifests))
    assert sorted(snapshot_keys(containerd, ns_all)) == sorted(chain_ids(host.diff_ids))
    rows = _image_rows(pyctl, ns_all)
    assert [(r[0], r[1]) for r in rows] == sorted((name, str(m.platform)) for m in idx.manifests)

    # a platform the index lacks: one error line, no record, no content, and no lease left
    # behind (twice: no lease piles up either)
    ns_none = more_namespaces("none")
    for _ in range(2):
        proc = pyctl("pull", "--platform", "linux/s390x", name, namespace=ns_none)
        assert assert_failure(proc).startswith(f"pull {name}: ")
        assert "linux/s390x" in proc.stderr
    assert leases(containerd, ns_none) == []
    assert ctr_images(containerd, ns_none) == {} and content_labels(containerd, ns_none) == {}

    # --unpack false: content only, no snapshot, no snapshot label
    ns_plain = more_namespaces("nounpack")
    assert_success(pyctl("pull", "--unpack", "false", name, namespace=ns_plain))
    labels = content_labels(containerd, ns_plain)
    assert set(labels) == {idx.index_digest} | blobs(host)
    assert snapshot_keys(containerd, ns_plain) == []
    assert snap_label not in labels[host.config_digest]
    assert _image_rows(pyctl, ns_plain) == [(name, HOST, "0B")]


def test_repull_is_up_to_date_without_fetching_blobs(
    containerd: Containerd,
    namespace: str,
    pyctl: PyctlRunner,
    registry: Registry,
    fault_proxy: FaultProxy,
    image_factory: ImageFactory,
    sk: Skopeo,
) -> None:
    arc = image_factory("example.test/again:1", variant_content="repull")
    img = arc.single
    sk.seed(arc.path, registry.ref("team/again", "1"))
    name = fault_proxy.ref("team/again", "1")

    proc = pyctl("pull", name, namespace=namespace)
    assert assert_success(proc)[-1] == name
    assert "Downloaded newer image" in proc.stderr
    first = fault_proxy.blob_get_counts()
    assert first == {d: 1 for d in (img.config_digest, *img.layer_digests)}

    fault_proxy.clear()
    proc = pyctl("pull", name, namespace=namespace)
    assert assert_success(proc)[-1] == name
    assert f"Status: Image is up to date for {name}" in proc.stderr
    assert fault_proxy.blob_get_counts() == {}, "a re-pull fetched blobs again"
    assert ctr_images(containerd, namespace)[name].digest == img.manifest_digest
    assert len(snapshot_keys(containerd, namespace)) == 2


def test_pull_into_k8s_io_is_adopted_by_cri(
    containerd: Containerd,
    namespace: str,
    pyctl: PyctlRunner,
    registry: Registry,
    image_factory: ImageFactory,
    sk: Skopeo,
) -> None:
    arc = image_factory("example.test/kube:1", variant_content="k8s")
    img = arc.single
    sk.seed(arc.path, registry.ref("team/kube", "1"))
    name = registry.ref("team/kube", "1")
    image_id = img.config_digest
    try:
        assert assert_success(pyctl("-n", "k8s.io", "pull", name))[-1] == name

        def adopted() -> bool:
            recs = ctr_images(containerd, "k8s.io")
            return (
                image_id in recs
                and recs[image_id].labels.get("io.cri-containerd.image") == "managed"
                and recs[name].labels.get("io.cri-containerd.image") == "managed"
            )

        wait_until("CRI adopts the pulled image", adopted, timeout=10)
        recs = ctr_images(containerd, "k8s.io")
        assert recs[name].digest == recs[image_id].digest == img.manifest_digest
        # pyctl shows the image once (the CRI's ID record is folded into the tagged row)
        listing = pyctl("-n", "k8s.io", "images", "--format", "json")
        rows = json_lines("\n".join(assert_success(listing)))
        assert [(r["Repository"], r["Tag"]) for r in rows] == [(f"{registry.host}/team/kube", "1")]
        # other namespaces do not see it
        assert ctr_images(containerd, namespace) == {}
        assert content_labels(containerd, namespace) == {}
        assert pyctl("images", "-q", namespace=namespace).stdout == ""
    finally:
        containerd.clean_namespace("k8s.io", delete=False)


# --- push ----------------------------------------------------------------------------------------


def _push_line(proc_stdout: str) -> re.Match[str]:
    last = proc_stdout.splitlines()[-1]
    m = PUSH_LINE.match(last)
    assert m, last
    return m


def test_push_uploads_then_mounts_into_another_repo(
    containerd: Containerd,
    namespace: str,
    pyctl: PyctlRunner,
    fault_proxy: FaultProxy,
    image_factory: ImageFactory,
    sk: Skopeo,
) -> None:
    arc = image_factory("example.test/push:1", variant_content="push-mount")
    img = arc.single
    containerd.import_image(arc, namespace=namespace)
    blobs = [img.config_digest, *img.layer_digests]

    one = fault_proxy.ref("team/one", "v1")
    proc = pyctl("tag", arc.name, one, namespace=namespace)
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == "", proc
    proc = pyctl("push", one, namespace=namespace)
    m = _push_line("\n".join(assert_success(proc)))
    assert m["ref"] == one and m["digest"] == img.manifest_digest
    raw = sk.raw(one)
    assert sha256(raw) == m["digest"] and len(raw) == int(m["size"])
    assert sorted(fault_proxy.uploaded_digests()) == sorted(blobs)
    # containerd now knows the blobs are in team/one
    labels = content_labels(containerd, namespace)
    for d in blobs:
        assert labels[d][SOURCE_LABEL] == "team/one"

    # the same image into another repository of the same registry: mounted, not uploaded
    two = fault_proxy.ref("team/two", "v1")
    assert_success(pyctl("tag", one, two, namespace=namespace))
    fault_proxy.clear()
    proc = pyctl("push", two, namespace=namespace)
    m = _push_line("\n".join(assert_success(proc)))
    assert m["digest"] == img.manifest_digest and sha256(sk.raw(two)) == img.manifest_digest
    assert fault_proxy.uploaded_digests() == []
    mounts = [
        r
        for r in fault_proxy.requests_for("POST", r"/v2/team/two/blobs/uploads/?$")
        if "mount" in r.query_params
    ]
    assert sorted(r.query_params["mount"][0] for r in mounts) == sorted(blobs)
    assert {r.query_params["from"][0] for r in mounts} == {"team/one"}
    assert {r.status for r in mounts} == {201}
    assert fault_proxy.blob_upload_starts("team/two") == len(blobs)
    labels = content_labels(containerd, namespace)
    for d in blobs:
        assert labels[d][SOURCE_LABEL] == "team/one,team/two"

    # pushing it again: nothing to send; -q prints the digest line only
    fault_proxy.clear()
    proc = pyctl("push", "-q", two, namespace=namespace)
    assert proc.returncode == 0 and proc.stderr == "", proc
    assert proc.stdout == f"{two}: digest: {img.manifest_digest} size: {img.manifest.size}\n"
    assert fault_proxy.blob_upload_starts() == 0 and fault_proxy.uploaded_digests() == []
    assert fault_proxy.requests_for("PUT") == []


def test_push_multi_platform_index(
    containerd: Containerd,
    namespace: str,
    pyctl: PyctlRunner,
    registry: Registry,
    fault_proxy: FaultProxy,
    image_factory: ImageFactory,
    sk: Skopeo,
    more_namespaces: Callable[[str], str],
) -> None:
    arc = image_factory("example.test/multi:2", multi_platform=True, variant_content="push-mp")
    idx = arc.index
    sk.seed(arc.path, registry.ref("team/multi", "2"), all_platforms=True)
    src = registry.ref("team/multi", "2")

    # all platforms here: the whole index goes, every blob mounted from team/multi
    assert_success(pyctl("pull", "--all-platforms", src, namespace=namespace))
    dest = fault_proxy.ref("team/copy", "2")
    assert_success(pyctl("tag", src, dest, namespace=namespace))
    m = _push_line("\n".join(assert_success(pyctl("push", dest, namespace=namespace))))
    assert m["ref"] == dest and m["digest"] == idx.index_digest
    raw = sk.raw(dest)
    assert sha256(raw) == idx.index_digest and len(raw) == int(m["size"])
    for man in idx.manifests:
        assert sha256(sk.raw(f"{fault_proxy.host}/team/copy@{man.manifest_digest}")) == (
            man.manifest_digest
        )
    assert fault_proxy.uploaded_digests() == []
    put_manifests = [r.path.rsplit("/", 1)[1] for r in fault_proxy.manifest_requests("PUT")]
    assert sorted(put_manifests) == sorted([*(x.manifest_digest for x in idx.manifests), "2"])
    assert put_manifests[-1] == "2", "the tag goes last, after the manifests it lists"

    # only the host platform here: refused, with the way out in the message
    partial_ns = more_namespaces("partial")
    assert_success(pyctl("pull", src, namespace=partial_ns))
    partial = fault_proxy.ref("team/partial", "2")
    assert_success(pyctl("tag", src, partial, namespace=partial_ns))
    fault_proxy.clear()
    proc = pyctl("push", partial, namespace=partial_ns)
    assert_error(proc, f"push {partial}:", "--platform")
    assert fault_proxy.requests == [], "a refused push talked to the registry"
    assert registry.tags("team/partial") == []

    # --platform: that manifest alone, under the tag
    proc = pyctl("push", "--platform", HOST, partial, namespace=partial_ns)
    m = _push_line("\n".join(assert_success(proc)))
    host = idx.for_platform(HOST)
    assert m["digest"] == host.manifest_digest and int(m["size"]) == host.manifest.size
    assert sk.raw(partial) == host.manifest.data


def test_push_unknown_image(namespace: str, pyctl: PyctlRunner, fault_proxy: FaultProxy) -> None:
    ref = fault_proxy.ref("team/ghost", "1")
    proc = pyctl("push", ref, namespace=namespace)
    assert_error(proc, f"push {ref}:", "no such image")
    assert fault_proxy.requests == []


# --- push reads containerd's committed blob files -------------------------------------------------


def test_push_reads_layers_from_containerds_content_directory(
    containerd: Containerd,
    namespace: str,
    pyctl: PyctlRunner,
    fault_proxy: FaultProxy,
    image_factory: ImageFactory,
    sk: Skopeo,
) -> None:
    arc = image_factory("example.test/push-files:1", variant_content="push-files")
    img = arc.single
    containerd.import_image(arc, namespace=namespace)
    ref = fault_proxy.ref("team/files", "1")
    assert_success(pyctl("tag", arc.name, ref, namespace=namespace))

    proc = pyctl(
        "--debug", "push", "-q", ref, namespace=namespace, env={"PYTHONPROFILEIMPORTTIME": "1"}
    )
    assert proc.returncode == 0, proc
    assert proc.stdout == f"{ref}: digest: {img.manifest_digest} size: {img.manifest.size}\n"
    # every containerd call of a push (image Get, content Info/Read/Update) is encoded by
    # hand: it never imports protobuf's runtime, a sixth of a small command's start-up
    imported = {ln.rsplit("|", 1)[-1].strip() for ln in proc.stderr.splitlines() if "|" in ln}
    assert "pyctl.containerd.store" in imported  # the import times are there
    assert not [m for m in imported if m.startswith("google") or m.endswith("_pb2")]
    # every layer came from the file containerd committed (the root containerd names in its
    # introspection answer), from the start
    blobs_dir = containerd.root / "io.containerd.content.v1.content" / "blobs" / "sha256"
    reads = re.findall(r"^debug: read (\S+) from byte (\d+)$", proc.stderr, re.MULTILINE)
    assert sorted(reads) == sorted(
        (str(blobs_dir / d.removeprefix("sha256:")), "0") for d in img.layer_digests
    ), proc.stderr
    assert "content.Read" not in "".join(
        line for line in proc.stderr.splitlines() if any(d in line for d in img.layer_digests)
    )
    # and the registry, which checks each digest, holds the image
    assert sorted(fault_proxy.uploaded_digests()) == sorted([img.config_digest, *img.layer_digests])
    assert sha256(sk.raw(ref)) == img.manifest_digest
    # the source label the push adds (content.Update, encoded by hand) is there
    assert content_labels(containerd, namespace)[img.layer_digests[0]][SOURCE_LABEL] == "team/files"


def test_push_does_not_read_a_file_the_namespace_does_not_hold(
    containerd: Containerd,
    namespace: str,
    more_namespaces: Callable[[str], str],
    pyctl: PyctlRunner,
    fault_proxy: FaultProxy,
    image_factory: ImageFactory,
) -> None:
    """The blob file is on disk for another namespace; this one has lost the layer: the push
    fails as it did when every byte came through containerd's Read, and nothing of the layer
    is read or uploaded."""
    arc = image_factory("example.test/push-ns:1", variant_content="push-ns")
    img = arc.single
    other = more_namespaces("holder")
    containerd.import_image(arc, namespace=other)
    containerd.import_image(arc, namespace=namespace)
    layer = img.layer_digests[0]
    containerd.ctr("content", "rm", layer, namespace=namespace)
    assert layer in content_labels(containerd, other)
    assert layer not in content_labels(containerd, namespace)

    ref = fault_proxy.ref("team/lost", "1")
    assert_success(pyctl("tag", arc.name, ref, namespace=namespace))
    proc = pyctl("--debug", "push", ref, namespace=namespace)
    assert proc.returncode == 1, proc
    error = proc.stderr.strip().splitlines()[-1]
    assert (
        error
        == f"pyctl: error: push {ref}: layer {layer} is not in containerd (pull the image again)"
    )
    assert "debug: read" not in proc.stderr
    assert layer not in fault_proxy.uploaded_digests()


def test_both_roads_to_a_blob_give_the_same_bytes(
    containerd: Containerd, namespace: str, image_factory: ImageFactory
) -> None:
    """The root containerd names is the content directory it keeps, and a layer read from
    there equals the layer read through containerd's Read stream (the road taken when the
    file cannot be opened), from the start and from an offset."""
    from pyctl.containerd import content
    from pyctl.containerd.client import Client

    arc = image_factory("example.test/roads:1", variant_content="roads")
    containerd.import_image(arc, namespace=namespace)
    layer = arc.single.layer_digests[0]
    client = Client(containerd.address, namespace)
    try:
        root = content.local_root(client)
        assert root == str(containerd.root / "io.containerd.content.v1.content")
        size = content.info(client, layer).size
        for offset in (0, 7, size - 1):
            opened = content.open_committed(root, layer, size)
            assert opened is not None
            from_file = b"".join(content.file_chunks(*opened, offset))
            streamed = b"".join(content.read_chunks(client, layer, offset))
            assert len(from_file) == size - offset and from_file == streamed
        assert sha256(b"".join(content.read_chunks(client, layer))) == layer
    finally:
        client.close()
