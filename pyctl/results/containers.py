"""Containers and namespaces: what `ps` and `namespace ls` return."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import NamedTuple


class ContainerInfo(NamedTuple):
    """A container and its task, as `ps` sees them."""

    id: str
    name: str  # nerdctl/name, k8s://NS/POD/CONTAINER, else the ID
    image: str
    command: str
    created: datetime | None
    state: str  # created, running, paused, pausing, exited, unknown
    exit_code: int | None  # when exited
    exited_at: datetime | None
    pid: int  # 0 without a running task
    labels: Mapping[str, str] = {}
    runtime: str = ""
    snapshotter: str = ""
    ports: tuple[str, ...] = ()  # HOSTIP:PORT->PORT/PROTO, from nerdctl's label
    size: int | None = None  # writable layer bytes (when asked for)
    virtual_size: int | None = None  # image layers + writable layer


class NamespaceInfo(NamedTuple):
    name: str
    containers: int
    images: int  # as `images` counts them (the CRI plugin's extra records folded)
    labels: Mapping[str, str] = {}
