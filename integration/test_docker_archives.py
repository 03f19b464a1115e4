"""Docker as a referee for pyctl's archives: a private Docker engine (Debian's docker.io, the
``docker_engine`` fixture) loads and runs what ``pyctl save`` writes, and pyctl loads what
``docker save`` writes, so that containerd runs it. Both ways the image keeps its identity:
docker's image ID (the config digest, with docker's graph driver store) is the config digest
of the manifest containerd holds. Cross-checked with ``ctr``."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import signal
import subprocess
import tarfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from integration import images
from integration.conftest import PyctlRunner
from integration.dockerd import DockerEngine
from integration.helpers import assert_ok, unique_id
from integration.images import ImageSpec, import_into
from integration.registry_helpers import chain_ids, ctr_images, leases, snapshot_keys
from integration.testbed import Containerd, alive, mounts_under

Command = tuple[list[str], Mapping[str, str]]  # argv, environment


@dataclass(frozen=True)
class Referee:
    """containerd (a fresh namespace, more on demand), pyctl, the Docker engine (emptied before
    and after each test), a tmp dir."""

    containerd: Containerd
    ns: str
    more: Callable[[str], str]
    pyctl: PyctlRunner
    docker: DockerEngine
    tmp: Path

    def pyctl_ok(self, *args: str, namespace: str | None = None) -> list[str]:
        """pyctl in the namespace: exit 0, nothing on stderr; stdout lines."""
        return assert_ok(self.pyctl(*args, namespace=namespace or self.ns)).splitlines()

    def pyctl_command(self, *args: str, namespace: str | None = None) -> Command:
        return self.pyctl.argv(*args), self.pyctl.env(namespace or self.ns)

    def docker_command(self, *args: str) -> Command:
        return self.docker.argv(*args), self.docker.client_env()

    def docker_load(self, archive: Path) -> list[str]:
        return self.docker.docker("load", "-i", str(archive)).stdout.splitlines()

    def docker_cat(self, image: str, path: str) -> str:
        run = self.docker.docker("run", "--rm", "--network", "none", image, "cat", path)
        return run.stdout

    def ctr_cat(self, image: str, path: str) -> str:
        cid = unique_id("referee")
        return self.containerd.ctr("run", "--rm", image, cid, "cat", path, namespace=self.ns).stdout

    def ctr_manifest(self, name: str) -> dict[str, object]:
        """The manifest containerd's record ``name`` points at (a single-platform image),
        read with ``ctr content get``."""
        record = ctr_images(self.containerd, self.ns)[name]
        assert "manifest" in record.media_type, record
        got = self.containerd.ctr("content", "get", record.digest, namespace=self.ns)
        manifest: dict[str, object] = json.loads(got.stdout)
        return manifest

    def ctr_config_digest(self, name: str) -> str:
        config = self.ctr_manifest(name)["config"]
        assert isinstance(config, dict)
        return str(config["digest"])

    def record_digests(self, namespace: str) -> dict[str, str]:
        return {n: r.digest for n, r in ctr_images(self.containerd, namespace).items()}


@pytest.fixture
def referee(
    containerd: Containerd,
    namespace: str,
    more_namespaces: Callable[[str], str],
    pyctl: PyctlRunner,
    docker_engine: DockerEngine,
    tmp_path: Path,
) -> Iterator[Referee]:
    docker_engine.reset()
    yield Referee(containerd, namespace, more_namespaces, pyctl, docker_engine, tmp_path)
    docker_engine.reset()


def _pipe(first: Command, second: Command) -> list[str]:
    """``FIRST | SECOND``: both exit 0 with nothing on stderr; SECOND's stdout lines."""
    with subprocess.Popen(
        first[0],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=first[1],
    ) as producer:
        consumer = subprocess.run(
            second[0], stdin=producer.stdout, capture_output=True, text=True, env=second[1]
        )
        assert producer.stdout is not None and producer.stderr is not None
        producer.stdout.close()
        producer_err = producer.stderr.read().decode()
        producer.wait(timeout=120)
    assert (producer.returncode, producer_err) == (0, ""), f"{first[0]}: {producer_err}"
    assert (consumer.returncode, consumer.stderr) == (0, ""), f"{second[0]}: {consumer.stderr}"
    return consumer.stdout.splitlines()


def _into_docker(referee: Referee, imgs: Sequence[tuple[ImageSpec, str]]) -> None:
    """Put images into docker the way docker reads them (an archive with a manifest.json),
    not through pyctl."""
    src = images.write_oci_archive(
        referee.tmp / "into-docker.tar", list(imgs), docker_manifest_json=True
    )
    loaded = referee.docker_load(src.path)
    assert sorted(loaded) == sorted(f"Loaded image: {name}" for _, name in imgs)


def _layer_digests(manifest: Mapping[str, object]) -> list[str]:
    layers = manifest["layers"]
    assert isinstance(layers, list)
    return [str(layer["digest"]) for layer in layers]


def _file_digests(archive: Path) -> list[str]:
    """The digest of every regular file in a tar (links are not counted)."""
    out = []
    with tarfile.open(archive) as tf:
        for member in tf.getmembers():
            f = tf.extractfile(member) if member.isreg() else None
            if f is not None:
                out.append("sha256:" + hashlib.sha256(f.read()).hexdigest())
    return out


# pyctl save -> docker ----------------------------------------------------------------------------


def test_pyctl_save_loads_into_docker_and_runs(referee: Referee) -> None:
    img = images.build_image(
        variant_content="saved\n", files={"etc/referee.txt": "written into the image\n"}
    )
    name = "example.test/referee/saved:1"
    archive = images.write_oci_archive(referee.tmp / "src.tar", img, name)
    import_into(referee.containerd, archive, namespace=referee.ns)  # ctr, not pyctl

    saved = referee.tmp / "saved.tar"
    assert referee.pyctl_ok("save", "-o", str(saved), name) == []

    assert referee.docker_load(saved) == [f"Loaded image: {name}"]
    assert referee.docker.image_names() == {name}
    assert referee.docker_cat(name, "/etc/referee.txt") == "written into the image\n"
    # docker made the image's own layers of it, and kept its config
    inspect = referee.docker.docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", name)
    assert json.loads(inspect.stdout) == list(img.diff_ids)
    inspect = referee.docker.docker("image", "inspect", "--format", "{{json .Config.Cmd}}", name)
    assert json.loads(inspect.stdout) == ["/bin/sh"]


def test_pyctl_save_of_several_images_loads_whole_into_docker(referee: Referee) -> None:
    """Three images in one archive, sharing the busybox layer: one with a Docker Hub name, one
    a multi-platform index on a host:port registry: docker loads them all, each runs."""
    plain = images.build_image(variant_content="a\n", files={"name.txt": "plain\n"})
    hub = images.build_image(variant_content="b\n", files={"name.txt": "hub\n"})
    multi = images.build_index(variant_content="c\n", files={"name.txt": "multi\n"})
    # name in containerd, as a user types it, as docker shows it; what docker gets; /name.txt
    cases = [
        ("example.test/referee/plain:1", "example.test/referee/plain:1", plain, "plain\n"),
        ("docker.io/library/referee-hub:2", "referee-hub:2", hub, "hub\n"),
        ("127.0.0.1:5000/team/multi:3", "127.0.0.1:5000/team/multi:3", multi.host, "multi\n"),
    ]
    src = images.write_oci_archive(
        referee.tmp / "src.tar", [(plain, cases[0][0]), (hub, cases[1][0]), (multi, cases[2][0])]
    )
    import_into(referee.containerd, src, namespace=referee.ns, all_platforms=True)

    saved = referee.tmp / "several.tar"
    assert referee.pyctl_ok("save", "-o", str(saved), *(given for _, given, _, _ in cases)) == []

    loaded = referee.docker_load(saved)
    assert sorted(loaded) == sorted(f"Loaded image: {name}" for _, name, _, _ in cases)
    assert referee.docker.image_names() == {name for _, name, _, _ in cases}
    for _, name, img, content in cases:
        assert referee.docker.image_id(name) == img.config_digest, name
        assert referee.docker_cat(name, "/name.txt") == content, name


# docker save -> pyctl load ------------------------------------------------------------------------

SHARED = "a layer two images share\n"
APP = "example.test/referee/app"
TOOL = "example.test/referee/tool:1"
HOST_PORT = "127.0.0.1:5000/team/app:1"


def test_docker_save_loads_into_containerd_and_runs(referee: Referee) -> None:
    """Two images sharing layers (the busybox one, and one at different depths, which docker
    20.10 writes once and links), one with three names (two tags, one on a host:port
    registry): ``pyctl load`` (from the file and from a pipe) makes a record per name, as
    ``ctr import`` does, and each runs with ``ctr run``."""
    app = images.build_image(variant_content=SHARED, files={"app.txt": "app\n"})
    tool = images.build_image(variant_content="tool\n", files={"variant.txt": SHARED})
    shared_layer = app.diff_ids[1]
    assert tool.diff_ids[2] == shared_layer and tool.diff_ids[0] == app.diff_ids[0]
    _into_docker(referee, [(app, f"{APP}:1"), (tool, TOOL)])
    referee.docker.docker("tag", f"{APP}:1", f"{APP}:2")
    referee.docker.docker("tag", f"{APP}:1", HOST_PORT)
    names = [f"{APP}:1", f"{APP}:2", HOST_PORT, TOOL]
    saved = referee.tmp / "docker-save.tar"
    referee.docker.docker("save", "-o", str(saved), *names)
    in_archive = _file_digests(saved)
    assert in_archive.count(app.diff_ids[0]) == 1 and in_archive.count(shared_layer) == 1

    loaded = referee.pyctl_ok("load", "-i", str(saved))
    assert sorted(loaded) == sorted(f"Loaded image: {n}" for n in names)
    listed = referee.pyctl_ok("images", "--format", "{{.Repository}}:{{.Tag}}")
    assert sorted(listed) == sorted(names)

    # what containerd holds: a record per name, the app's three on one manifest
    records = referee.record_digests(referee.ns)
    assert set(records) == set(names)
    assert records[f"{APP}:1"] == records[f"{APP}:2"] == records[HOST_PORT] != records[TOOL]
    for name, img in ((HOST_PORT, app), (TOOL, tool)):
        assert _layer_digests(referee.ctr_manifest(name)) == list(img.diff_ids)  # plain tars
        assert referee.ctr_config_digest(name) == referee.docker.image_id(name)
    snapshots = set(snapshot_keys(referee.containerd, referee.ns))
    assert set(chain_ids(app.diff_ids)) | set(chain_ids(tool.diff_ids)) <= snapshots
    assert leases(referee.containerd, referee.ns) == []

    # `docker save | pyctl load`, and ctr reading the same archive: the same records
    piped = referee.more("pipe")
    lines = _pipe(
        referee.docker_command("save", *names), referee.pyctl_command("load", namespace=piped)
    )
    assert sorted(lines) == sorted(loaded)
    assert referee.record_digests(piped) == records
    by_ctr = referee.more("ctr")
    referee.containerd.ctr("images", "import", "--no-unpack", str(saved), namespace=by_ctr)
    assert referee.record_digests(by_ctr) == records

    assert referee.ctr_cat(f"{APP}:2", "/app.txt") == "app\n"
    assert referee.ctr_cat(HOST_PORT, "/variant.txt") == SHARED
    assert referee.ctr_cat(TOOL, "/variant.txt") == SHARED  # the linked layer, on top


# the config digest, both ways ---------------------------------------------------------------------


def test_config_digest_survives_both_round_trips(referee: Referee) -> None:
    """docker → ``pyctl load`` → containerd → ``pyctl save | docker load`` → docker: docker's
    image ID is the config digest of containerd's manifest at every step."""
    img = images.build_image(
        variant_content="round trip\n", labels={"org.example.referee": "config digest"}
    )
    name = "example.test/referee/circle:1"
    _into_docker(referee, [(img, name)])
    docker_id = referee.docker.image_id(name)
    assert docker_id == img.config_digest

    from_docker = referee.tmp / "from-docker.tar"
    referee.docker.docker("save", "-o", str(from_docker), name)
    assert referee.pyctl_ok("load", "-i", str(from_docker)) == [f"Loaded image: {name}"]
    config_digest = referee.ctr_config_digest(name)
    assert config_digest == docker_id
    config = referee.containerd.ctr("content", "get", config_digest, namespace=referee.ns)
    assert config.stdout.encode() == img.config.data

    referee.docker.docker("rmi", name)
    assert referee.docker.lines("images", "-aq") == []
    loaded = _pipe(referee.pyctl_command("save", name), referee.docker_command("load"))
    assert loaded == [f"Loaded image: {name}"]
    assert referee.docker.image_id(name) == config_digest
    inspect = referee.docker.docker("image", "inspect", "--format", "{{json .Config.Labels}}", name)
    assert json.loads(inspect.stdout) == {"org.example.referee": "config digest"}


# the referee itself -------------------------------------------------------------------------------


def test_engine_uses_its_own_containerd(referee: Referee) -> None:
    """Docker's containers run in the engine's containerd (namespace ``moby``), not in the
    system's or the test bed's."""
    engine = referee.docker
    assert engine.containerd is not None
    assert engine.containerd.address != referee.containerd.address
    info = engine.docker("info", "--format", "{{.DockerRootDir}} {{.Driver}}").stdout.split()
    assert info == [str(engine.data_root), engine.storage_driver]
    img = images.build_image(variant_content="private\n")
    _into_docker(referee, [(img, "example.test/referee/private:1")])
    engine.docker(
        "run", "-d", "--network", "none", "--name", "sleeper", img.config_digest, "sleep", "60"
    )
    assert "moby" in engine.containerd.namespaces()
    (task,) = engine.containerd.lines("tasks", "ls", "-q", namespace="moby")
    assert task == engine.docker("inspect", "--format", "{{.Id}}", "sleeper").stdout.strip()
    assert "moby" not in referee.containerd.namespaces()


def _cgroups(name: str) -> list[str]:
    """The cgroup directories ``/<name>`` in every hierarchy (cgroup v1 and v2)."""
    return glob.glob(f"/sys/fs/cgroup/{name}") + glob.glob(f"/sys/fs/cgroup/*/{name}")


@pytest.mark.parametrize("crash", [False, True], ids=["graceful", "dockerd-killed"])
def test_engine_stop_leaves_nothing(tmp_path: Path, crash: bool) -> None:
    """stop() with a running container: no dockerd, shim or container process, no mount,
    no cgroup, no directory."""
    engine = DockerEngine().start()
    try:
        img = images.build_image(variant_content="stop\n")
        archive = images.write_oci_archive(
            tmp_path / "stop.tar", img, "example.test/referee/stop:1", docker_manifest_json=True
        )
        engine.docker("load", "-i", str(archive.path))
        engine.docker(
            "run", "-d", "--network", "none", "example.test/referee/stop:1", "sleep", "300"
        )
        assert engine.containerd is not None
        pids = [engine.pid, *engine.containerd.shim_pids(), engine.containerd.pid]
        (container,) = engine.lines("ps", "-q")
        pids.append(int(engine.docker("inspect", "--format", "{{.State.Pid}}", container).stdout))
        assert _cgroups(engine.cgroup_parent)
        assert mounts_under(engine.dir)
        if crash:
            assert engine.pid is not None
            os.kill(engine.pid, signal.SIGKILL)
    finally:
        engine.stop()
    for pid in pids:
        assert pid is not None and not alive(pid), f"pid {pid} survived stop()"
    assert mounts_under(engine.dir) == []
    assert not engine.dir.exists()
    assert _cgroups(engine.cgroup_parent) == []
