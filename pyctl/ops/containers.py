"""`ps` and container inspect: containers, their tasks and (with -s) snapshot sizes."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pyctl.containerd import containers as cstore
from pyctl.containerd.client import Client
from pyctl.containerd.containers import Container, Task
from pyctl.errors import InUseError, InvalidArgumentError, NotFoundError, PyctlError
from pyctl.render import container_status
from pyctl.results.containers import ContainerInfo

_PS_FILTERS = ("status", "name", "id", "label", "ancestor")
_STATUSES = ("created", "running", "paused", "pausing", "exited", "stopped", "unknown")


def container_name(c: Container) -> str:
    labels = c.labels
    if labels.get("nerdctl/name"):
        return labels["nerdctl/name"]
    ns = labels.get("io.kubernetes.pod.namespace")
    pod = labels.get("io.kubernetes.pod.name")
    if ns and pod:
        ctr = labels.get("io.kubernetes.container.name")
        return f"k8s://{ns}/{pod}/{ctr}" if ctr else f"k8s://{ns}/{pod}"
    return c.id


def container_state(task: Task | None) -> str:
    """The state word nerdctl uses: created (no task), running, exited, paused, …"""
    if task is None:
        return "created"
    return "exited" if task.status == "stopped" else task.status


def container_info(c: Container, task: Task | None) -> ContainerInfo:
    state = container_state(task)
    return ContainerInfo(
        id=c.id,
        name=container_name(c),
        image=c.image,
        command=c.command,
        created=c.created_at,
        state=state,
        exit_code=task.exit_status if task is not None and state == "exited" else None,
        exited_at=task.exited_at if task is not None and state == "exited" else None,
        pid=task.pid if task is not None else 0,
        labels=dict(c.labels),
        runtime=c.runtime,
        snapshotter=c.snapshotter,
        ports=_ports(c),
    )


def _ports(c: Container) -> tuple[str, ...]:
    """``HOSTIP:PORT->PORT/PROTO`` for each port nerdctl published (its ``nerdctl/ports``)."""
    raw = c.labels.get("nerdctl/ports")
    if not raw:
        return ()
    try:
        entries = json.loads(raw)
    except ValueError:
        return ()
    out = []
    for e in entries if isinstance(entries, list) else []:
        if isinstance(e, dict):
            host_ip = e.get("HostIP") or "0.0.0.0"
            out.append(
                f"{host_ip}:{e.get('HostPort')}->{e.get('ContainerPort')}/"
                f"{str(e.get('Protocol') or 'tcp').lower()}"
            )
    return tuple(out)


def parse_ps_filters(specs: Sequence[str]) -> list[tuple[str, str]]:
    out = []
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not sep or key not in _PS_FILTERS:
            raise InvalidArgumentError(
                f'invalid filter "{spec}": use KEY=VALUE with KEY one of {", ".join(_PS_FILTERS)}'
            )
        if key == "status" and value not in _STATUSES:
            raise InvalidArgumentError(
                f'invalid filter "{spec}": status is one of {", ".join(_STATUSES)}'
            )
        out.append((key, value))
    return out


def list_ps(
    client: Client,
    *,
    show_all: bool = False,
    last: int | None = None,
    latest: bool = False,
    filters: Sequence[str] = (),
    size: bool = False,
) -> list[ContainerInfo]:
    """The containers `ps` shows, newest first: running ones unless ``show_all``, a status
    filter, ``last`` or ``latest``; with ``size`` their snapshots' sizes."""
    parsed = parse_ps_filters(filters)
    ctrs = cstore.list_containers(client)
    tasks = cstore.list_tasks(client)
    ancestors: set[str] | None = None
    if any(k == "ancestor" for k, _ in parsed):
        ancestors = _ancestor_names(client, [v for k, v in parsed if k == "ancestor"])

    ctrs.sort(key=lambda c: c.created_at or datetime.min.replace(tzinfo=UTC), reverse=True)
    if latest:
        last = 1
    if last is not None and last > 0:
        ctrs = ctrs[:last]
        show_all = True

    out: list[ContainerInfo] = []
    for c in ctrs:
        info = container_info(c, tasks.get(c.id))
        if not show_all and info.state != "running" and not any(k == "status" for k, _ in parsed):
            continue
        if not _keep(c, info.name, info.state, parsed, ancestors):
            continue
        if size:
            info = _with_sizes(client, c, info)
        out.append(info)
    return out


def _keep(
    c: Container,
    name: str,
    state: str,
    filters: Sequence[tuple[str, str]],
    ancestors: set[str] | None,
) -> bool:
    for key, value in filters:
        if key == "status":
            want = "exited" if value == "stopped" else value
            if state != want:
                return False
        elif key == "name":
            if value not in name:
                return False
        elif key == "id":
            if not c.id.startswith(value):
                return False
        elif key == "label":
            k, has_value, v = value.partition("=")
            if k not in c.labels or (has_value and c.labels[k] != v):
                return False
        elif key == "ancestor" and ancestors is not None and c.image not in ancestors:
            return False
    return True


def _ancestor_names(client: Client, queries: Sequence[str]) -> set[str]:
    """Image names whose target equals that of any queried image (name or ID)."""
    from pyctl.ops.catalog import Catalog, find_records  # only this filter reads images

    catalog = Catalog(client)
    records = catalog.records()
    targets = {r.target.digest for q in queries for r in find_records(records, q, catalog)}
    names = {r.name for r in records if r.target.digest in targets}
    names.update(queries)
    return names


def _with_sizes(client: Client, c: Container, info: ContainerInfo) -> ContainerInfo:
    """``info`` with the writable layer's size and the whole chain's (``ps -s``)."""
    from pyctl.containerd import snapshots

    if not c.snapshot_key or not c.snapshotter:
        return info._replace(size=0)  # no snapshot of its own
    chain: list[str] = [c.snapshot_key]
    stat = snapshots.stat(client, c.snapshotter, c.snapshot_key)
    while stat is not None and stat.parent:
        chain.append(stat.parent)
        stat = snapshots.stat(client, c.snapshotter, stat.parent)
    usage = snapshots.usage_sizes(client, c.snapshotter, chain)
    return info._replace(size=usage.get(c.snapshot_key, 0), virtual_size=sum(usage.values()))


def find_containers(ctrs: Sequence[Container], query: str) -> list[Container]:
    """The containers an operator means by ``query``: the ID or the name as ``ps`` shows it,
    else those whose ID starts with ``query`` (as docker; one match is what a caller wants)."""
    exact = [c for c in ctrs if c.id == query or container_name(c) == query]
    if exact or not query:
        return exact
    return [c for c in ctrs if c.id.startswith(query)]


def inspect_containers(client: Client, queries: Sequence[str]) -> tuple[list[Any], list[str]]:
    ctrs = cstore.list_containers(client)
    tasks = cstore.list_tasks(client)
    out: list[Any] = []
    missing: list[str] = []
    for q in queries:
        matches = find_containers(ctrs, q)
        if len(matches) != 1:
            missing.append(q)
            continue
        c = matches[0]
        t = tasks.get(c.id)
        info = container_info(c, t)
        state = info.state
        status = container_status(state, info.exit_code, info.exited_at)
        args = c.args
        out.append(
            {
                "Id": c.id,
                "Created": c.created_at.isoformat() if c.created_at else "",
                "Path": args[0] if args else "",
                "Args": args[1:],
                "State": {
                    "Status": state,
                    "Running": state == "running",
                    "Paused": state == "paused",
                    "Pid": t.pid if t else 0,
                    "ExitCode": t.exit_status if t else 0,
                    "FinishedAt": t.exited_at.isoformat() if t and t.exited_at else "",
                },
                "Image": c.image,
                "Name": container_name(c),
                "Driver": c.snapshotter,
                "Runtime": c.runtime,
                "Config": {
                    "Labels": dict(c.labels),
                    "Image": c.image,
                    "Env": list(c.process.get("env") or []),
                    "Cmd": args,
                    "WorkingDir": c.process.get("cwd", ""),
                },
                "StatusText": status,
            }
        )
    return out, missing


# rm, container prune ----------------------------------------------------------------------------

_LIVE = ("running", "paused", "pausing", "unknown")  # a process may be there: -f kills it
KILL_TIMEOUT = 30.0  # seconds a SIGKILLed task gets to be reaped


def _remove(client: Client, c: Container, task: Task | None, force: bool) -> None:
    """Remove container ``c``: its task (killed with SIGKILL and waited for if alive and
    ``force``), the record, then its snapshot."""
    import signal

    from pyctl.containerd import snapshots
    from pyctl.containerd.client import ContainerdNotFound

    if task is not None:
        if task.status in _LIVE:
            if not force:
                raise InUseError(
                    f"cannot remove container {c.id[:12]}: it is {task.status} "
                    "(stop it first, or use -f to kill it)"
                )
            with contextlib.suppress(ContainerdNotFound):  # it may just have exited
                if task.status == "paused":
                    cstore.resume_task(client, c.id)  # a frozen process may not die
                cstore.kill_task(client, c.id, signal.SIGKILL)
            with contextlib.suppress(ContainerdNotFound):
                cstore.wait_task(client, c.id, timeout=KILL_TIMEOUT)
        with contextlib.suppress(ContainerdNotFound):
            cstore.delete_task(client, c.id)
    cstore.delete_container(client, c.id)
    if c.snapshotter and c.snapshot_key:
        with contextlib.suppress(ContainerdNotFound):
            snapshots.remove(client, c.snapshotter, c.snapshot_key)


def remove_containers(
    client: Client, queries: Sequence[str], *, force: bool = False
) -> tuple[list[str], list[str]]:
    """`rm`: remove the named containers; returns (removed IDs, error messages)."""
    ctrs = cstore.list_containers(client)
    tasks = cstore.list_tasks(client)
    removed: list[str] = []
    errors: list[str] = []
    for q in queries:
        matches = find_containers(ctrs, q)
        if not matches:
            errors.append(f'no such container "{q}" (see pyctl ps -a)')
            continue
        if len(matches) > 1:
            ids = ", ".join(c.id[:12] for c in matches)
            errors.append(f'"{q}" matches {len(matches)} containers ({ids}): give the ID')
            continue
        c = matches[0]
        if c.id in removed:
            continue
        try:
            _remove(client, c, tasks.get(c.id), force)
        except InUseError as exc:
            errors.append(exc.message)
            continue
        except PyctlError as exc:
            errors.append(f"cannot remove container {c.id[:12]}: {exc.message}")
            continue
        removed.append(c.id)
    return removed, errors


def prune_containers(client: Client) -> tuple[list[str], int]:
    """`container prune`: remove every container without a live task (never started, or
    exited). Returns the removed IDs and the bytes their writable snapshots held."""
    from pyctl.containerd import snapshots

    ctrs = cstore.list_containers(client)
    tasks = cstore.list_tasks(client)
    victims = [c for c in ctrs if c.id not in tasks or tasks[c.id].status == "stopped"]
    sizes: dict[str, int] = {}
    for snapshotter in {c.snapshotter for c in victims if c.snapshotter and c.snapshot_key}:
        keys = [c.snapshot_key for c in victims if c.snapshotter == snapshotter]
        sizes.update(snapshots.usage_sizes(client, snapshotter, keys))
    removed: list[str] = []
    reclaimed = 0
    for c in victims:
        try:
            _remove(client, c, tasks.get(c.id), force=False)
        except NotFoundError:
            continue  # removed meanwhile by someone else
        removed.append(c.id)
        reclaimed += sizes.get(c.snapshot_key, 0)
    return removed, reclaimed
