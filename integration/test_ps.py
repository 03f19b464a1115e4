"""`pyctl ps` and container inspect against containers made by ctr (running, killed, created,
kubelet-labelled), cross-checked with `ctr containers ls` / `ctr tasks ls`."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass

import pytest

from integration.conftest import BUSYBOX_NAME, ImageFactory, PyctlRunner
from integration.helpers import (
    assert_error,
    assert_ok,
    ctr_task_status,
    header_re,
    json_lines,
    kill_and_wait,
    parse_table,
    run_all,
    run_many,
    short,
    unique_id,
)
from integration.images import Archive
from integration.testbed import Containerd

PS_HEADER = ("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES")
OTHER_IMAGE = "example.test/ps-other:1"
LONG_COMMAND = ["echo", "a-long-command-line-here"]


@dataclass(frozen=True)
class Containers:
    ns: str
    pyctl: PyctlRunner
    running: str
    exited: str
    created: str
    k8s: str
    other: str  # the newest; uses OTHER_IMAGE and LONG_COMMAND
    busybox_digest: str

    @property
    def all(self) -> list[str]:
        """Newest first."""
        return [self.other, self.k8s, self.created, self.exited, self.running]

    def run(self, *args: str) -> str:
        return assert_ok(self.pyctl(*args, namespace=self.ns))

    def ids(self, *args: str) -> list[str]:
        return self.run("ps", "-q", "--no-trunc", *args).splitlines()

    def outputs(self, *commands: tuple[str, ...]) -> list[str]:
        """stdout of each command (run concurrently; all must succeed)."""
        return [assert_ok(p) for p in run_all(self.pyctl, commands, namespace=self.ns)]


@pytest.fixture(scope="module")
def ctrs(
    containerd: Containerd,
    module_namespace: str,
    module_pyctl: PyctlRunner,
    busybox_image: Archive,
    image_factory: ImageFactory,
) -> Containers:
    ns = module_namespace
    containerd.import_image(busybox_image, namespace=ns)
    containerd.import_image(image_factory(OTHER_IMAGE, variant_content="ps"), namespace=ns)
    c = Containers(
        ns=ns,
        pyctl=module_pyctl,
        running=unique_id("ps-running"),
        exited=unique_id("ps-exited"),
        created=unique_id("ps-created"),
        k8s=unique_id("ps-k8s"),
        other=unique_id("ps-other"),
        busybox_digest=busybox_image.digest,
    )
    containerd.ctr("run", "-d", BUSYBOX_NAME, c.running, "sleep", "300", namespace=ns)
    containerd.ctr("run", "-d", BUSYBOX_NAME, c.exited, "sleep", "300", namespace=ns)
    kill_and_wait(containerd, ns, c.exited)
    containerd.ctr("containers", "create", BUSYBOX_NAME, c.created, "sleep", "10", namespace=ns)
    containerd.ctr(
        "containers",
        "create",
        "--label",
        "io.kubernetes.pod.namespace=ns",
        "--label",
        "io.kubernetes.pod.name=pod",
        "--label",
        "io.kubernetes.container.name=ctr",
        BUSYBOX_NAME,
        c.k8s,
        "sleep",
        "1",
        namespace=ns,
    )
    containerd.ctr("containers", "create", OTHER_IMAGE, c.other, *LONG_COMMAND, namespace=ns)
    assert sorted(containerd.lines("containers", "ls", "-q", namespace=ns)) == sorted(c.all)
    assert ctr_task_status(containerd, ns) == {c.running: "RUNNING", c.exited: "STOPPED"}
    return c


def test_ps_shows_running_only(ctrs: Containers, containerd: Containerd) -> None:
    out = ctrs.run("ps")
    assert re.match(header_re(*PS_HEADER), out.splitlines()[0]), out
    table = parse_table(out)
    assert table.header == list(PS_HEADER)
    (row,) = table.rows
    assert row == {
        "CONTAINER ID": ctrs.running[:12],
        "IMAGE": BUSYBOX_NAME,
        "COMMAND": '"sleep 300"',
        "CREATED": row["CREATED"],
        "STATUS": "Up",
        "PORTS": "",
        "NAMES": ctrs.running,  # no name label: the container ID
    }
    assert row["CREATED"].endswith(" ago")
    assert ctr_task_status(containerd, ctrs.ns)[ctrs.running] == "RUNNING"
    # `container ls` is the same command
    same = parse_table(ctrs.run("container", "ls"))
    assert same.column("CONTAINER ID") == [ctrs.running[:12]]


def test_ps_all(ctrs: Containers, containerd: Containerd) -> None:
    table = parse_table(ctrs.run("ps", "-a"))
    assert table.column("CONTAINER ID") == [c[:12] for c in ctrs.all]
    rows = {r["CONTAINER ID"]: r for r in table.rows}
    # the killed task is still there (not deleted): Exited with 128+9
    assert ctr_task_status(containerd, ctrs.ns)[ctrs.exited] == "STOPPED"
    assert re.fullmatch(r"Exited \(137\) .+ ago", rows[ctrs.exited[:12]]["STATUS"])
    assert rows[ctrs.running[:12]]["STATUS"] == "Up"
    for cid in (ctrs.created, ctrs.k8s, ctrs.other):
        assert rows[cid[:12]]["STATUS"] == "Created"
    assert rows[ctrs.k8s[:12]]["NAMES"] == "k8s://ns/pod/ctr"
    assert rows[ctrs.created[:12]]["NAMES"] == ctrs.created
    assert rows[ctrs.other[:12]]["IMAGE"] == OTHER_IMAGE
    # COMMAND is cut to 20 characters (the last one an ellipsis), then quoted
    assert rows[ctrs.other[:12]]["COMMAND"] == '"echo a-long-command…"'
    # every ctr container is listed
    ctr_ids = containerd.lines("containers", "ls", "-q", namespace=ctrs.ns)
    assert sorted(ctrs.ids("-a")) == sorted(ctr_ids)


def test_ps_no_trunc(ctrs: Containers) -> None:
    table = parse_table(ctrs.run("ps", "-a", "--no-trunc"))
    assert table.column("CONTAINER ID") == ctrs.all
    rows = {r["CONTAINER ID"]: r for r in table.rows}
    assert rows[ctrs.other]["COMMAND"] == json.dumps(" ".join(LONG_COMMAND))


def test_ps_quiet(ctrs: Containers) -> None:
    running, everything, full = ctrs.outputs(
        ("ps", "-q"), ("ps", "-a", "-q"), ("ps", "-a", "-q", "--no-trunc")
    )
    assert running == ctrs.running[:12] + "\n"
    assert everything.splitlines() == [c[:12] for c in ctrs.all]
    assert full.splitlines() == ctrs.all


def test_ps_last_and_latest(ctrs: Containers) -> None:
    # -n / -l show the newest containers in any state
    q = ("ps", "-q", "--no-trunc")
    n1, latest, n3, n10, table = ctrs.outputs(
        (*q, "-n", "1"), (*q, "-l"), (*q, "-n", "3"), (*q, "--last", "10"), ("ps", "-l")
    )
    assert n1.splitlines() == [ctrs.other]
    assert latest.splitlines() == [ctrs.other]
    assert n3.splitlines() == ctrs.all[:3]
    assert n10.splitlines() == ctrs.all
    (row,) = parse_table(table).rows
    assert row["STATUS"] == "Created" and row["IMAGE"] == OTHER_IMAGE


def test_ps_go_template(ctrs: Containers) -> None:
    out = ctrs.run("ps", "-a", "--format", "{{.ID}}\\t{{.Status}}")
    lines = [ln.split("\t") for ln in out.splitlines()]
    assert [ln[0] for ln in lines] == [c[:12] for c in ctrs.all]
    status = dict((a, b) for a, b in lines)
    assert status[ctrs.running[:12]] == "Up"
    assert status[ctrs.created[:12]] == "Created"
    assert status[ctrs.exited[:12]].startswith("Exited (137) ")
    out = ctrs.run("ps", "--format", "table {{.Names}}\\t{{.Image}}")
    assert out.splitlines()[0].split() == ["NAMES", "IMAGE"]
    assert out.splitlines()[1].split() == [ctrs.running, BUSYBOX_NAME]
    out = ctrs.run("ps", "-a", "--format", "{{json .Names}}", "-f", "label=io.kubernetes.pod.name")
    assert out == '"k8s://ns/pod/ctr"\n'


def test_ps_format_json(ctrs: Containers) -> None:
    objs = json_lines(ctrs.run("ps", "-a", "--format", "json"))
    docker_keys = {"ID", "Image", "Command", "CreatedAt", "RunningFor", "Status", "Ports"}
    docker_keys |= {"Names", "Labels"}
    for o in objs:
        assert docker_keys <= set(o), o
    assert [o["ID"] for o in objs] == [c[:12] for c in ctrs.all]
    by_id = {o["ID"]: o for o in objs}
    k8s = by_id[ctrs.k8s[:12]]
    assert k8s["Names"] == "k8s://ns/pod/ctr"
    assert "io.kubernetes.pod.name=pod" in k8s["Labels"].split(",")
    assert k8s["Image"] == BUSYBOX_NAME and k8s["Command"] == '"sleep 1"'
    assert by_id[ctrs.running[:12]]["Status"] == "Up"
    same = json_lines(ctrs.run("ps", "-a", "--format", "{{json .}}", "--no-trunc"))
    assert [o["ID"] for o in same] == ctrs.all


def test_ps_size(ctrs: Containers) -> None:
    table = parse_table(ctrs.run("ps", "-s"))
    assert table.header == [*PS_HEADER, "SIZE"]
    (row,) = table.rows
    assert re.fullmatch(r"\d+(\.\d+)?[kMG]?B \(virtual \d+(\.\d+)?[kMG]?B\)", row["SIZE"]), row


PS_FILTER_CASES: list[tuple[list[str], list[str]]] = [
    (["status=running"], ["running"]),
    (["status=exited"], ["exited"]),
    (["status=created"], ["other", "k8s", "created"]),
    (["status=paused"], []),
    (["name=k8s://ns/pod"], ["k8s"]),
    (["id=ps-running"], ["running"]),
    (["label=io.kubernetes.pod.name=pod"], ["k8s"]),
    (["label=io.kubernetes.pod.namespace"], ["k8s"]),
    (["label=io.kubernetes.pod.name=other"], []),
    (["ancestor=busybox"], ["k8s", "created", "exited", "running"]),
    (["ancestor=" + OTHER_IMAGE], ["other"]),
    (["ancestor=BUSYBOX_ID"], ["k8s", "created", "exited", "running"]),
    (["status=created", "ancestor=busybox"], ["k8s", "created"]),
    (["status=created", "label=io.kubernetes.container.name=ctr"], ["k8s"]),
]


def test_ps_filters(ctrs: Containers) -> None:
    busybox_id = short(ctrs.busybox_digest)

    def args(filters: list[str]) -> list[str]:
        out = ["ps", "-a", "-q", "--no-trunc"]
        for f in filters:
            out += ["-f", f.replace("BUSYBOX_ID", busybox_id)]
        return out

    def check(expected: list[str], proc: subprocess.CompletedProcess[str]) -> None:
        assert assert_ok(proc).splitlines() == [getattr(ctrs, e) for e in expected]

    run_many(
        ctrs.pyctl,
        [(expected, args(filters)) for filters, expected in PS_FILTER_CASES],
        check,
        namespace=ctrs.ns,
    )


def test_ps_status_filter_implies_all(ctrs: Containers) -> None:
    assert ctrs.ids("-f", "status=exited") == [ctrs.exited]
    # other filters alone keep the running-only default
    assert ctrs.ids("-f", "ancestor=busybox") == [ctrs.running]


def test_ps_empty_namespace(pyctl: PyctlRunner, namespace: str) -> None:
    out = assert_ok(pyctl("ps", "-a", namespace=namespace))
    assert re.match(header_re(*PS_HEADER), out) and len(out.splitlines()) == 1
    assert assert_ok(pyctl("ps", "-a", "-q", namespace=namespace)) == ""


# --- container inspect --------------------------------------------------------------------------


def test_container_inspect(ctrs: Containers) -> None:
    objs = json.loads(ctrs.run("inspect", ctrs.running, ctrs.exited, ctrs.k8s))
    assert [o["Id"] for o in objs] == [ctrs.running, ctrs.exited, ctrs.k8s]
    running, exited, k8s = objs
    assert running["State"]["Status"] == "running" and running["State"]["Running"] is True
    assert running["State"]["Pid"] > 0
    assert running["Image"] == BUSYBOX_NAME
    assert running["Path"] == "sleep" and running["Args"] == ["300"]
    assert exited["State"]["Status"] == "exited" and exited["State"]["ExitCode"] == 137
    assert k8s["Name"] == "k8s://ns/pod/ctr"
    assert k8s["State"]["Status"] == "created"
    assert k8s["Config"]["Labels"]["io.kubernetes.pod.name"] == "pod"


def test_container_inspect_format_and_lookup(ctrs: Containers) -> None:
    fmt = ("inspect", "--format", "{{.Id}} {{.Name}}")
    by_id, by_prefix, by_name, status, mixed = ctrs.outputs(
        (*fmt, ctrs.k8s),
        (*fmt, ctrs.k8s[:12]),  # a unique ID prefix
        (*fmt, "k8s://ns/pod/ctr"),
        ("inspect", "--type", "container", "--format", "{{.StatusText}}", ctrs.running),
        ("inspect", "--format", "{{.Id}}", BUSYBOX_NAME, ctrs.created),  # image and container
    )
    assert by_id == by_prefix == by_name == f"{ctrs.k8s} k8s://ns/pod/ctr\n"
    assert status == "Up\n"
    assert mixed.splitlines() == [ctrs.busybox_digest, ctrs.created]


def test_container_subcommands_and_aliases(ctrs: Containers) -> None:
    ps_all, ls_all, list_all, inspect, image_instead = ctrs.outputs(
        ("ps", "-a", "-q"),
        ("container", "ls", "-a", "-q"),
        ("container", "list", "-a", "-q"),  # docker's other name
        ("container", "inspect", "--format", "{{.Id}}", ctrs.running),
        ("image", "list", "-q"),
    )
    assert ps_all == ls_all == list_all and ctrs.running[:12] in ps_all.split()
    assert inspect == f"{ctrs.running}\n"
    assert ctrs.busybox_digest.split(":")[1][:12] in image_instead.split()
    # `container inspect` looks for containers only
    proc = ctrs.pyctl("container", "inspect", BUSYBOX_NAME, namespace=ctrs.ns)
    assert_error(proc, f'no such container: "{BUSYBOX_NAME}"', stdout="")


def test_container_inspect_unknown(ctrs: Containers) -> None:
    unknown, image_only, container_only = run_all(
        ctrs.pyctl,
        [
            ("inspect", "no-such-ctr"),
            ("image", "inspect", ctrs.running),  # image inspect does not find containers
            ("inspect", "--type", "container", BUSYBOX_NAME),
        ],
        namespace=ctrs.ns,
    )
    assert_error(unknown, '"no-such-ctr"')
    assert_error(image_only, ctrs.running)
    assert_error(container_only, "busybox")
