"""The Python API (``pyctl.connect()``), in-process against the test bed's containerd and
registries: typed results with raw values, the CLI's errors, and the README's example run as
written (the test registry's address in place of ``localhost:5000``)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

import pyctl
from integration.conftest import BUSYBOX_NAME
from integration.helpers import ctr_image_digests
from integration.images import Archive
from integration.registry_helpers import Skopeo
from integration.testbed import Containerd, Registry

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def client(containerd: Containerd, namespace: str, tmp_path: Path) -> Iterator[pyctl.Client]:
    config = tmp_path / "pyctl.toml"  # no user config leaks in
    config.write_text("")
    with pyctl.connect(
        containerd.address,
        namespace,
        snapshotter=containerd.snapshotter,
        hosts_dir=[str(tmp_path / "no-hosts")],
        containerd_config="",
        config=str(config),
    ) as c:
        yield c


def test_images_tag_remove_and_archives(
    client: pyctl.Client,
    containerd: Containerd,
    namespace: str,
    busybox_image: Archive,
    tmp_path: Path,
) -> None:
    spec = busybox_image.single
    # import from a path: the records made
    (imported,) = client.import_archive(busybox_image.path)
    assert imported == pyctl.Imported(BUSYBOX_NAME, spec.manifest.digest, True)

    (img,) = client.images()
    assert isinstance(img, pyctl.Image)
    assert (img.name, img.digest, img.config_digest) == (
        BUSYBOX_NAME,
        spec.manifest.digest,
        spec.config.digest,
    )
    assert (img.repository, img.tag) == ("docker.io/library/busybox", "latest")
    assert isinstance(img.created, datetime) and img.created.year == 2024
    assert img.size > 0 and isinstance(img.size, int)  # bytes, not "1.2MB"
    (plat,) = img.platforms
    assert plat.blob_size == spec.manifest.size + spec.config.size + sum(
        layer.size for layer in spec.layers
    )

    client.tag("busybox", "example.test/api:1")
    assert ctr_image_digests(containerd, namespace) == {
        BUSYBOX_NAME: spec.manifest.digest,
        "example.test/api:1": spec.manifest.digest,
    }

    # export to a file object, and to a path; both hold the image
    buf = io.BytesIO()
    client.export(buf, ["example.test/api:1"])
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tar:
        assert f"blobs/sha256/{spec.manifest.digest[7:]}" in tar.getnames()
    out = tmp_path / "api.tar"
    client.export(out, ["busybox"])
    assert out.stat().st_size > 0

    assert client.remove("example.test/api:1", "busybox") == ["example.test/api:1", BUSYBOX_NAME]
    assert client.images() == []
    # import from a file object
    with out.open("rb") as f:
        (again,) = client.import_archive(f)
    assert again.name == BUSYBOX_NAME

    # errors: the CLI's one-line messages, as PyctlError subclasses
    with pytest.raises(pyctl.NotFoundError, match=r'^no such image "nope" \(see pyctl images\)$'):
        client.tag("nope", "example.test/x:1")
    with pytest.raises(pyctl.PartialFailure) as info:
        client.remove("nope", BUSYBOX_NAME)
    assert info.value.done == [BUSYBOX_NAME]
    assert info.value.errors == ['no such image "nope" (see pyctl images)']


def test_pull_push_containers_and_hosts(
    client: pyctl.Client,
    containerd: Containerd,
    namespace: str,
    registry: Registry,
    busybox_image: Archive,
    tmp_path: Path,
) -> None:
    spec = busybox_image.single
    Skopeo(tmp_path).seed(busybox_image.path, registry.ref("team/bb", "1"))
    seen: dict[str, int] = {}
    r = client.pull(
        registry.ref("team/bb", "1"), progress=lambda d, done, total: seen.update({d: done})
    )
    assert isinstance(r, pyctl.PullResult)
    assert (r.reference, r.digest) == (registry.ref("team/bb", "1"), spec.manifest.digest)
    assert r.written == len(spec.layers) + 1 and r.unpacked  # layers and config
    assert seen[spec.layers[0].digest] == spec.layers[0].size  # the callback saw every byte

    client.tag(r.reference, registry.ref("team/bb", "2"))
    p = client.push(registry.ref("team/bb", "2"))
    assert isinstance(p, pyctl.PushResult)
    assert (p.digest, p.tag) == (spec.manifest.digest, "2")
    assert Skopeo(tmp_path).raw(registry.ref("team/bb", "2")) == spec.manifest.data

    with pytest.raises(pyctl.NotFoundError, match="repository team/none not found at"):
        client.pull(registry.ref("team/none", "1"))

    containerd.ctr("containers", "create", r.reference, "api-c1", "true", namespace=namespace)
    (c,) = client.containers()
    assert isinstance(c, pyctl.ContainerInfo)
    assert (c.id, c.image, c.state, c.pid) == ("api-c1", r.reference, "created", 0)
    assert client.containers(all=False) == []  # running ones only
    assert client.remove_containers("api-c1") == ["api-c1"]
    assert containerd.lines("containers", "ls", "-q", namespace=namespace) == []

    doc = client.hosts(registry.host)
    assert doc["Registry"] == registry.host
    assert [e["Role"] for e in doc["Endpoints"]] == ["registry"]
    assert namespace in [n.name for n in client.namespaces()]


def _readme_example() -> str:
    text = (REPO / "README.md").read_text()
    m = re.search(r"## Python API\n.*?```python\n(.*?)```", text, re.S)
    assert m, "README has a Python API section with a python example"
    return m.group(1)


def test_readme_example_runs_as_written(
    containerd: Containerd,
    namespace: str,
    registry: Registry,
    busybox_image: Archive,
    tmp_path: Path,
) -> None:
    """The README's example, in a fresh interpreter, with this bed's containerd (environment)
    and registry (in place of localhost:5000); its output is what it says."""
    code = _readme_example().replace("localhost:5000", registry.host)
    (tmp_path / "busybox.tar").write_bytes(busybox_image.path.read_bytes())
    env = containerd.client_env()
    env.update(CONTAINERD_NAMESPACE=namespace, HOME=str(tmp_path), DOCKER_CONFIG=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"{BUSYBOX_NAME} ")
    assert lines[-1] == f"{registry.host}/demo/busybox:1 {busybox_image.digest}"
    assert ctr_image_digests(containerd, namespace) == {
        f"{registry.host}/demo/busybox:1": busybox_image.digest
    }
    assert os.path.exists(tmp_path / "busybox.tar")


def test_import_pyctl_is_light() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, pyctl; pyctl.connect; pyctl.Image; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'grpc', 'click', 'urllib3', 'google'}))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (proc.returncode, proc.stdout) == (0, "[]\n"), proc.stderr
