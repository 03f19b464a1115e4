"""pyctl: a Docker-compatible command line for containerd, and the library under it.

    import pyctl

    with pyctl.connect(namespace="k8s.io") as c:
        print([img.name for img in c.images()])

``import pyctl`` is light: the containerd and registry machinery is imported when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from pyctl.api import Client, PartialFailure, ProgressCallback, connect
    from pyctl.errors import (
        ConfigError,
        InUseError,
        InvalidArgumentError,
        InvalidReferenceError,
        NotFoundError,
        PyctlError,
        UnreachableError,
    )
    from pyctl.results import (
        CheckStep,
        CheckVerdict,
        ContainerInfo,
        EndpointCheck,
        Finding,
        HostsCheck,
        Image,
        ImagePlatform,
        Imported,
        NamespaceInfo,
        PresentedCertificate,
        PullResult,
        PushResult,
        Severity,
    )

__all__ = [
    "CheckStep",
    "CheckVerdict",
    "Client",
    "ConfigError",
    "ContainerInfo",
    "EndpointCheck",
    "Finding",
    "HostsCheck",
    "Image",
    "ImagePlatform",
    "Imported",
    "InUseError",
    "InvalidArgumentError",
    "InvalidReferenceError",
    "NamespaceInfo",
    "NotFoundError",
    "PartialFailure",
    "PresentedCertificate",
    "ProgressCallback",
    "PullResult",
    "PushResult",
    "PyctlError",
    "Severity",
    "UnreachableError",
    "__version__",
    "connect",
]

_HOMES = {
    "api": ("Client", "PartialFailure", "ProgressCallback", "connect"),
    "errors": (
        "ConfigError",
        "InUseError",
        "InvalidArgumentError",
        "InvalidReferenceError",
        "NotFoundError",
        "PyctlError",
        "UnreachableError",
    ),
    "results": (
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
    ),
}


def __getattr__(name: str) -> Any:
    """The public names, imported at first use (``import pyctl`` stays light)."""
    import importlib

    for module, names in _HOMES.items():
        if name in names:
            return getattr(importlib.import_module(f"pyctl.{module}"), name)
    raise AttributeError(f"module 'pyctl' has no attribute {name!r}")
