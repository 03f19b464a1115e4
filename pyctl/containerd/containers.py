"""Containers and their tasks, read in two calls per namespace (no per-container round trips;
the messages decoded by pyctl.containerd.wire)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, NamedTuple

import grpc

from pyctl.containerd import wire
from pyctl.containerd.client import Client, ContainerdError

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


def container(buf: bytes) -> Container:
    """An encoded ``Container`` (containers service)."""
    id_ = image = runtime = snapshotter = snapshot_key = ""
    labels: dict[str, str] = {}
    created_at = None
    process: Mapping[str, Any] = {}
    for number, value in wire.fields(buf):
        if number == 1:
            id_ = wire.text(value)
        elif number == 2:
            key, val = wire.entry(value)
            labels[key] = val
        elif number == 3:
            image = wire.text(value)
        elif number == 4:  # Runtime: name (1), options (2)
            for n, v in wire.fields(wire.data(value)):
                if n == 1:
                    runtime = wire.text(v)
        elif number == 5:  # google.protobuf.Any: type_url (1), value (2)
            for n, v in wire.fields(wire.data(value)):
                if n == 2 and v:
                    process = spec_process(wire.data(v))
        elif number == 6:
            snapshotter = wire.text(value)
        elif number == 7:
            snapshot_key = wire.text(value)
        elif number == 8:
            created_at = wire.timestamp(value)
    return Container(id_, image, labels, runtime, snapshotter, snapshot_key, created_at, process)


def _containers(answer: bytes) -> list[Container]:
    """The containers (field 1) of a ListContainersResponse, or of a ListContainerMessage."""
    return [container(wire.data(v)) for number, v in wire.fields(answer) if number == 1]


def list_containers(client: Client, filters: Iterable[str] = ()) -> list[Container]:
    """All containers in one unary List (one message, no per-container stream handoff); a
    namespace whose list exceeds the message limit is read with ListStream instead."""
    filters = list(filters)
    request = wire.encode(*((1, f) for f in filters))
    try:
        return _containers(client.call_raw("containers.List", request, {"filters": filters}))
    except ContainerdError as err:
        if err.code != grpc.StatusCode.RESOURCE_EXHAUSTED:
            raise
    answers = client.stream_raw("containers.ListStream", request, {"filters": filters})
    return [c for answer in answers for c in _containers(answer)]


def task(buf: bytes) -> Task:
    """An encoded ``containerd.v1.types.Process``."""
    id_, pid, status, exit_status, exited_at = "", 0, 0, 0, None
    for number, value in wire.fields(buf):
        if number == 2:  # a task's ID is its container's
            id_ = wire.text(value)
        elif number == 3:
            pid = wire.integer(value)
        elif number == 4:
            status = wire.integer(value)
        elif number == 9:
            exit_status = wire.integer(value)
        elif number == 10:
            exited_at = wire.timestamp(value)
    return Task(id_, pid, TASK_STATUS.get(status, "unknown"), exit_status, exited_at)


def list_tasks(client: Client) -> dict[str, Task]:
    """Every task of the namespace, keyed by container ID (one call)."""
    answer = client.call_raw("tasks.List", b"", {})
    tasks = (task(wire.data(v)) for number, v in wire.fields(answer) if number == 1)
    return {t.id: t for t in tasks}


# removal ----------------------------------------------------------------------------------------


def kill_task(client: Client, container_id: str, signal: int) -> None:
    """Send ``signal`` to every process of the container's task."""
    from pyctl._api.services.tasks.v1 import tasks_pb2

    req = tasks_pb2.KillRequest(container_id=container_id, signal=signal, all=True)
    client.call("tasks", "Kill", req, what=f"task {container_id}")


def resume_task(client: Client, container_id: str) -> None:
    from pyctl._api.services.tasks.v1 import tasks_pb2

    client.call(
        "tasks",
        "Resume",
        tasks_pb2.ResumeTaskRequest(container_id=container_id),
        what=f"task {container_id}",
    )


def wait_task(client: Client, container_id: str, timeout: float | None = None) -> int:
    """Wait until the task has exited; its exit status."""
    from pyctl._api.services.tasks.v1 import tasks_pb2

    req = tasks_pb2.WaitRequest(container_id=container_id)
    resp = client.call("tasks", "Wait", req, what=f"task {container_id}", timeout=timeout)
    return int(resp.exit_status)


def delete_task(client: Client, container_id: str) -> None:
    """Delete a task that is not running (stopped, or created and never started)."""
    from pyctl._api.services.tasks.v1 import tasks_pb2

    req = tasks_pb2.DeleteTaskRequest(container_id=container_id)
    client.call("tasks", "Delete", req, what=f"task {container_id}")


def delete_container(client: Client, container_id: str) -> None:
    """Delete the container record (its task must be gone; its snapshot stays)."""
    from pyctl._api.services.containers.v1 import containers_pb2

    req = containers_pb2.DeleteContainerRequest(id=container_id)
    client.call("containers", "Delete", req, what=f"container {container_id}")
