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
}


def lazy_attribute(package: str, homes: dict[str, tuple[str, ...]], name: str) -> Any:
    """``name`` from the submodule of ``package`` that ``homes`` says holds it, imported
    now (the module ``__getattr__`` of packages that re-export without importing)."""
    import importlib
    import sys

    for module, names in homes.items():
        if name in names:
            value = getattr(importlib.import_module(f"{package}.{module}"), name)
            setattr(sys.modules[package], name, value)  # found directly from now on
            return value
    raise AttributeError(f"module {package!r} has no attribute {name!r}")


def __getattr__(name: str) -> Any:
    """The public names, imported at first use (``import pyctl`` stays light); the result
    types come from :mod:`pyctl.results`."""
    import importlib

    results = importlib.import_module("pyctl.results")  # light: the names, no types yet
    return lazy_attribute("pyctl", {**_HOMES, "results": tuple(results.__all__)}, name)
