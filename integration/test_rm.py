"""`pyctl rm` / `container rm` and `container prune` against containers made by ctr, each
removal cross-checked with `ctr containers ls`, `ctr tasks ls` and `ctr snapshots ls`."""

from __future__ import annotations

import os
import subprocess
import sys

from integration.conftest import BUSYBOX_NAME, PyctlRunner
from integration.helpers import (
    assert_error,
    assert_ok,
    ctr_task_status,
    kill_and_wait,
    unique_id,
    wait_until,
)
from integration.images import Archive
from integration.testbed import Containerd, alive


def containers(containerd: Containerd, ns: str) -> set[str]:
    return set(containerd.lines("containers", "ls", "-q", namespace=ns))


def snapshot_keys(containerd: Containerd, ns: str) -> set[str]:
    """The active (container) snapshots; the image's committed layers stay."""
    rows = [ln.split() for ln in containerd.lines("snapshots", "ls", namespace=ns)[1:]]
    return {r[0] for r in rows if r[-1] == "Active"}


def task_pid(containerd: Containerd, ns: str, cid: str) -> int:
    for line in containerd.lines("tasks", "ls", namespace=ns)[1:]:
        fields = line.split()
        if fields[0] == cid:
            return int(fields[1])
    raise AssertionError(f"no task {cid}")


def test_rm_by_id_prefix_and_name_with_snapshots(
    pyctl: PyctlRunner, containerd: Containerd, namespace: str, busybox_image: Archive
) -> None:
    ns = namespace
    containerd.import_image(busybox_image, namespace=ns)
    by_id, by_prefix, by_name, kept = (unique_id(p) for p in ("rm-id", "rmpfx", "rm-nm", "keep"))
    for cid in (by_id, by_prefix, kept):
        containerd.ctr("containers", "create", BUSYBOX_NAME, cid, "true", namespace=ns)
    containerd.ctr(
        "containers",
        "create",
        "--label",
        "nerdctl/name=web",
        BUSYBOX_NAME,
        by_name,
        "true",
        namespace=ns,
    )
    assert {by_id, by_prefix, by_name, kept} <= snapshot_keys(containerd, ns)
    # the name as ps shows it
    ps = assert_ok(pyctl("ps", "-a", "--format", "{{.Names}}", namespace=ns)).split()
    assert "web" in ps

    out = assert_ok(pyctl("rm", by_id, "rmpfx", "web", namespace=ns))
    assert out.splitlines() == [by_id, by_prefix, by_name]
    assert containers(containerd, ns) == {kept}
    assert snapshot_keys(containerd, ns) & {by_id, by_prefix, by_name} == set()
    assert kept in snapshot_keys(containerd, ns)

    # `container rm` and `container remove` are the same command
    out = assert_ok(pyctl("container", "remove", kept, namespace=ns))
    assert out == kept + "\n"
    assert containers(containerd, ns) == set() and snapshot_keys(containerd, ns) == set()


def test_rm_refuses_running_unless_forced(
    pyctl: PyctlRunner, containerd: Containerd, namespace: str, busybox_image: Archive
) -> None:
    ns = namespace
    containerd.import_image(busybox_image, namespace=ns)
    running, exited, paused = (unique_id(p) for p in ("rm-run", "rm-exit", "rm-paused"))
    for cid in (running, exited, paused):
        containerd.ctr("run", "-d", BUSYBOX_NAME, cid, "sleep", "300", namespace=ns)
    kill_and_wait(containerd, ns, exited)
    containerd.ctr("tasks", "pause", paused, namespace=ns)
    assert ctr_task_status(containerd, ns) == {
        running: "RUNNING",
        exited: "STOPPED",
        paused: "PAUSED",
    }
    pid = task_pid(containerd, ns, running)
    assert alive(pid)

    # without -f: the running and the paused one are refused, the exited one goes
    proc = pyctl("rm", running, exited, paused, namespace=ns)
    assert proc.returncode == 1
    assert proc.stdout == exited + "\n"
    assert proc.stderr.splitlines() == [
        f"pyctl: error: cannot remove container {running[:12]}: it is running "
        "(stop it first, or use -f to kill it)",
        f"pyctl: error: cannot remove container {paused[:12]}: it is paused "
        "(stop it first, or use -f to kill it)",
    ]
    assert containers(containerd, ns) == {running, paused}
    assert ctr_task_status(containerd, ns) == {running: "RUNNING", paused: "PAUSED"}
    assert alive(pid)

    # -f: killed (SIGKILL), waited for, task and container and snapshot gone
    out = assert_ok(pyctl("rm", "-f", running, paused, namespace=ns))
    assert out.splitlines() == [running, paused]
    assert not alive(pid)
    assert containers(containerd, ns) == set()
    assert ctr_task_status(containerd, ns) == {}
    assert snapshot_keys(containerd, ns) == set()


def test_rm_errors(
    pyctl: PyctlRunner, containerd: Containerd, namespace: str, busybox_image: Archive
) -> None:
    ns = namespace
    containerd.import_image(busybox_image, namespace=ns)
    for cid in ("twin-a", "twin-b", "solo"):
        containerd.ctr("containers", "create", BUSYBOX_NAME, cid, "true", namespace=ns)
    assert_error(pyctl("rm", "nope", namespace=ns), 'no such container "nope" (see pyctl ps -a)')
    assert_error(
        pyctl("rm", "twin", namespace=ns),
        '"twin" matches 2 containers (twin-a, twin-b): give the ID',
    )
    # the others of the same call are removed; each failure is one line; exit 1
    proc = pyctl("rm", "nope", "solo", "twin", namespace=ns)
    assert (proc.returncode, proc.stdout) == (1, "solo\n")
    assert len(proc.stderr.splitlines()) == 2 and "Traceback" not in proc.stderr
    assert containers(containerd, ns) == {"twin-a", "twin-b"}
    assert_error(pyctl("rm", namespace=ns), "Missing argument", code=2, stdout=None)


def test_container_prune(
    pyctl: PyctlRunner, containerd: Containerd, namespace: str, busybox_image: Archive
) -> None:
    ns = namespace
    containerd.import_image(busybox_image, namespace=ns)
    running, exited, created, wrote = (
        unique_id(p) for p in ("pr-run", "pr-exit", "pr-created", "pr-wrote")
    )
    containerd.ctr("run", "-d", BUSYBOX_NAME, running, "sleep", "300", namespace=ns)
    containerd.ctr("run", "-d", BUSYBOX_NAME, exited, "sleep", "300", namespace=ns)
    kill_and_wait(containerd, ns, exited)
    containerd.ctr("containers", "create", BUSYBOX_NAME, created, "true", namespace=ns)
    # one that exited by itself after writing 2 MiB into its writable layer (task kept)
    containerd.ctr(
        "run",
        "-d",
        BUSYBOX_NAME,
        wrote,
        "sh",
        "-c",
        "dd if=/dev/zero of=/junk bs=1M count=2",
        namespace=ns,
    )
    wait_until("the writer exited", lambda: ctr_task_status(containerd, ns).get(wrote) == "STOPPED")

    # no terminal to ask on: refused without -f, nothing removed
    assert_error(pyctl("container", "prune", namespace=ns), "-f", "all stopped containers")
    assert len(containers(containerd, ns)) == 4

    # on a terminal, "n" removes nothing and exits 0
    main_fd, sub_fd = os.openpty()
    try:
        os.write(main_fd, b"n\n")
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pyctl",
                "-a",
                containerd.address,
                "-n",
                ns,
                "container",
                "prune",
            ],
            stdin=sub_fd,
            capture_output=True,
            text=True,
            timeout=60,
            env=pyctl.env(),
        )
    finally:
        os.close(sub_fd)
        os.close(main_fd)
    assert proc.returncode == 0 and proc.stderr == "", proc
    assert "WARNING! This will remove all stopped containers." in proc.stdout
    assert len(containers(containerd, ns)) == 4

    out = assert_ok(pyctl("container", "prune", "-f", namespace=ns)).splitlines()
    assert out[0] == "Deleted Containers:"
    assert sorted(out[1:4]) == sorted([exited, created, wrote])
    assert out[4] == ""
    # the 2 MiB written by one of them is what was reclaimed (decimal units, as nerdctl)
    assert out[5].startswith("Total reclaimed space: 2.")
    assert out[5].endswith("MB")
    assert containers(containerd, ns) == {running}
    assert ctr_task_status(containerd, ns) == {running: "RUNNING"}
    assert snapshot_keys(containerd, ns) == {running}

    # nothing left to prune
    out2 = assert_ok(pyctl("container", "prune", "-f", namespace=ns))
    assert out2 == "Total reclaimed space: 0B\n"
