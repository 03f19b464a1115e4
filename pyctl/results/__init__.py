"""What pyctl's operations return: typed, raw values (bytes, full digests, datetimes).

These are the objects of the Python API (``pyctl.connect()``); the CLI formats them (short
IDs, human sizes, relative times). Only the standard library is imported here, and each
command imports only its own kind. The types on the start-up path of the short commands
(images, ps) are NamedTuples: immutable like a frozen dataclass, and defined in a fraction of
its time (about 1M instructions against 5M each, on every start):

* :mod:`.images`: Image, ImagePlatform;
* :mod:`.transfers`: PullResult, PushResult, Imported;
* :mod:`.containers`: ContainerInfo, NamespaceInfo;
* :mod:`.check`: the ``hosts --check`` report (HostsCheck, EndpointCheck, CheckStep, …).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyctl.results.check import (
        CheckStep,
        CheckVerdict,
        EndpointCheck,
        Finding,
        HostsCheck,
        PresentedCertificate,
        Severity,
    )
    from pyctl.results.containers import ContainerInfo, NamespaceInfo
    from pyctl.results.images import Image, ImagePlatform
    from pyctl.results.transfers import Imported, PullResult, PushResult

_HOMES = {
    "images": ("Image", "ImagePlatform"),
    "transfers": ("Imported", "PullResult", "PushResult"),
    "containers": ("ContainerInfo", "NamespaceInfo"),
    "check": (
        "CheckStep",
        "CheckVerdict",
        "EndpointCheck",
        "Finding",
        "HostsCheck",
        "PresentedCertificate",
        "Severity",
    ),
}

__all__ = [
    "CheckStep",
    "CheckVerdict",
    "ContainerInfo",
    "EndpointCheck",
    "Finding",
    "HostsCheck",
    "Image",
    "ImagePlatform",
    "Imported",
    "NamespaceInfo",
    "PresentedCertificate",
    "PullResult",
    "PushResult",
    "Severity",
]


def __getattr__(name: str) -> Any:
    from pyctl import lazy_attribute

    return lazy_attribute("pyctl.results", _HOMES, name)
