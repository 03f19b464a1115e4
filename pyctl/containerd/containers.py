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
    m = wire.message(buf, _CONTAINER)
    return Container(
        id=m.get(1, ""),
        image=m.get(3, ""),
        labels=m.get(2, {}),
        runtime=m.get(4, ""),
        snapshotter=m.get(6, ""),
        snapshot_key=m.get(7, ""),
        created_at=m.get(8),
        process=m.get(5, {}),
    )


def _runtime_name(value: wire.Value) -> str:
    return str(wire.message(wire.data(value), {1: wire.text}).get(1, ""))  # Runtime.name


def _spec(value: wire.Value) -> Mapping[str, Any]:
    """The process of a google.protobuf.Any (type_url 1, value 2) holding a runtime spec."""
    raw = wire.message(wire.data(value), {2: wire.data}).get(2, b"")
    return spec_process(raw) if raw else {}


# field number -> reader: id, labels, image, runtime, spec, snapshotter, snapshot_key,
# created_at (updated_at, extensions and sandbox are not read)
_CONTAINER = {
    1: wire.text,
    2: wire.entry,
    3: wire.text,
    4: _runtime_name,
    5: _spec,
    6: wire.text,
    7: wire.text,
    8: wire.timestamp,
}


def _containers(answer: bytes) -> list[Container]:
    """The containers (field 1) of a ListContainersResponse, or of a ListContainerMessage."""
    return wire.repeated(answer, 1, container)


def list_containers(client: Client, filters: Iterable[str] = ()) -> list[Container]:
    """All containers in one unary List (one message, no per-container stream handoff); a
    namespace whose list exceeds the message limit is read with ListStream instead."""
    fields = [(1, "filters", f) for f in filters]
    try:
        return _containers(client.call_raw("containers.List", *fields))
    except ContainerdError as err:
        if err.code != grpc.StatusCode.RESOURCE_EXHAUSTED:
            raise
    answers = client.stream_raw("containers.ListStream", *fields)
    return [c for answer in answers for c in _containers(answer)]


def task(buf: bytes) -> Task:
    """An encoded ``containerd.v1.types.Process``."""
    m = wire.message(buf, _PROCESS)
    status = TASK_STATUS.get(m.get(4, 0), "unknown")
    return Task(m.get(2, ""), m.get(3, 0), status, m.get(9, 0), m.get(10))


# field number -> reader: id (a task's is its container's), pid, status, exit_status, exited_at
_PROCESS = {2: wire.text, 3: wire.integer, 4: wire.integer, 9: wire.integer, 10: wire.timestamp}


def list_tasks(client: Client) -> dict[str, Task]:
    """Every task of the namespace, keyed by container ID (one call)."""
    answer = client.call_raw("tasks.List")
    return {t.id: t for t in wire.repeated(answer, 1, task)}


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
