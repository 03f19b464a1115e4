"""Containers and their tasks, read in two calls per namespace (no per-container round trips)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, NamedTuple

import grpc

from pyctl._api.services.containers.v1 import containers_pb2
from pyctl._api.services.tasks.v1 import tasks_pb2
from pyctl.containerd.client import Client, ContainerdError, timestamp

# containerd.v1.types.Status
TASK_STATUS = {0: "unknown", 1: "created", 2: "running", 3: "stopped", 4: "paused", 5: "pausing"}


class Task(NamedTuple):
    id: str
    pid: int
    status: str
    exit_status: int
    exited_at: datetime | None


class Container(NamedTuple):
    id: str
    image: str
    labels: Mapping[str, str]
    runtime: str
    snapshotter: str
    snapshot_key: str
    created_at: datetime | None
    process: Mapping[str, Any] = {}  # the runtime spec's "process" object

    @property
    def args(self) -> list[str]:
        args = self.process.get("args") or []
        return [str(a) for a in args] if isinstance(args, list) else []

    @property
    def command(self) -> str:
        line = self.process.get("commandLine") or ""
        return (str(line) + " ".join(self.args)).strip()


_GO_SPEC_HEAD = '{"ociVersion":'


def spec_process(raw: bytes) -> Mapping[str, Any]:
    """The ``process`` object of a runtime spec (JSON); empty when there is none.

    Only that object is decoded when the spec starts as Go's encoding/json writes
    ``specs.Spec`` (``{"ociVersion":"…","process":{``), as every containerd client's does: the
    rest of a spec (mounts, namespaces, masked paths) is most of its bytes, and ``ps`` reads
    hundreds of them. Any other spec is decoded whole.
    """
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return {}
    try:
        if text.startswith(_GO_SPEC_HEAD):
            version, end = _DECODER.raw_decode(text, len(_GO_SPEC_HEAD))
            if isinstance(version, str) and text.startswith(',"process":', end):
                process, _ = _DECODER.raw_decode(text, end + len(',"process":'))
                return process if isinstance(process, dict) else {}
        spec = _DECODER.decode(text)
    except ValueError:
        return {}
    process = spec.get("process") if isinstance(spec, dict) else None
    return process if isinstance(process, dict) else {}


_DECODER = json.JSONDecoder()


def _container(msg: Any) -> Container:
    return Container(
        id=msg.id,
        image=msg.image,
        labels=dict(msg.labels),
        runtime=msg.runtime.name,
        snapshotter=msg.snapshotter,
        snapshot_key=msg.snapshot_key,
        created_at=timestamp(msg.created_at),
        process=spec_process(msg.spec.value) if msg.spec.value else {},
    )


def list_containers(client: Client, filters: Iterable[str] = ()) -> list[Container]:
    """All containers in one unary List (one message, no per-container stream handoff); a
    namespace whose list exceeds the message limit is read with ListStream instead."""
    req = containers_pb2.ListContainersRequest(filters=list(filters))
    try:
        resp = client.call("containers", "List", req)
        return [_container(c) for c in resp.containers]
    except ContainerdError as err:
        if err.code != grpc.StatusCode.RESOURCE_EXHAUSTED:
            raise
    return [_container(r.container) for r in client.stream("containers", "ListStream", req)]


def list_tasks(client: Client) -> dict[str, Task]:
    """Every task of the namespace, keyed by container ID (one call)."""
    resp = client.call("tasks", "List", tasks_pb2.ListTasksRequest())
    out: dict[str, Task] = {}
    for p in resp.tasks:
        out[p.id] = Task(
            id=p.id,
            pid=p.pid,
            status=TASK_STATUS.get(p.status, "unknown"),
            exit_status=p.exit_status,
            exited_at=timestamp(p.exited_at),
        )
    return out


# removal ----------------------------------------------------------------------------------------


def kill_task(client: Client, container_id: str, signal: int) -> None:
    """Send ``signal`` to every process of the container's task."""
    req = tasks_pb2.KillRequest(container_id=container_id, signal=signal, all=True)
    client.call("tasks", "Kill", req, what=f"task {container_id}")


def resume_task(client: Client, container_id: str) -> None:
    client.call(
        "tasks",
        "Resume",
        tasks_pb2.ResumeTaskRequest(container_id=container_id),
        what=f"task {container_id}",
    )


def wait_task(client: Client, container_id: str, timeout: float | None = None) -> int:
    """Wait until the task has exited; its exit status."""
    req = tasks_pb2.WaitRequest(container_id=container_id)
    resp = client.call("tasks", "Wait", req, what=f"task {container_id}", timeout=timeout)
    return int(resp.exit_status)


def delete_task(client: Client, container_id: str) -> None:
    """Delete a task that is not running (stopped, or created and never started)."""
    req = tasks_pb2.DeleteTaskRequest(container_id=container_id)
    client.call("tasks", "Delete", req, what=f"task {container_id}")


def delete_container(client: Client, container_id: str) -> None:
    """Delete the container record (its task must be gone; its snapshot stays)."""
    req = containers_pb2.DeleteContainerRequest(id=container_id)
    client.call("containers", "Delete", req, what=f"container {container_id}")
