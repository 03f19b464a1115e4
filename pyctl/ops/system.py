"""Namespaces, versions and server information."""

from __future__ import annotations

import platform as _platform
from typing import Any

from pyctl import __version__
from pyctl._api.services.containers.v1 import containers_pb2
from pyctl._api.services.images.v1 import images_pb2
from pyctl._api.services.introspection.v1 import introspection_pb2
from pyctl._api.services.namespaces.v1 import namespaces_pb2
from pyctl.containerd.client import Client
from pyctl.errors import PyctlError
from pyctl.oci import host_platform
from pyctl.results.containers import NamespaceInfo


def list_namespaces(client: Client) -> list[NamespaceInfo]:
    resp = client.call("namespaces", "List", namespaces_pb2.ListNamespacesRequest())
    nss = sorted(resp.namespaces, key=lambda n: n.name)
    # Count containers and images of every namespace concurrently.
    futures = [
        (
            n,
            client.future(
                "containers", "List", containers_pb2.ListContainersRequest(), namespace=n.name
            ),
            client.future("images", "List", images_pb2.ListImagesRequest(), namespace=n.name),
        )
        for n in nss
    ]
    return [
        NamespaceInfo(
            name=n.name,
            containers=len(client.result(fc).containers),
            images=_image_count(n.name, client.result(fi).images),
            labels=dict(n.labels),
        )
        for n, fc, fi in futures
    ]


def _image_count(namespace: str, images: Any) -> int:
    """Images as `pyctl images` counts them (the CRI plugin's extra records folded)."""
    from pyctl.containerd.images import record_from_proto
    from pyctl.ops.catalog import CRI_NAMESPACE, visible_records

    if namespace != CRI_NAMESPACE:
        return len(images)
    return len(visible_records([record_from_proto(m) for m in images], namespace))


def client_version() -> dict[str, str]:
    return {
        "Version": __version__,
        "Python": _platform.python_version(),
        "OsArch": str(host_platform()),
    }


def server_version(client: Client) -> dict[str, str]:
    from google.protobuf import empty_pb2

    resp = client.call("version", "Version", empty_pb2.Empty())
    return {"Version": resp.version, "Revision": resp.revision}


def plugins(client: Client) -> list[dict[str, Any]]:
    resp = client.call("introspection", "Plugins", introspection_pb2.PluginsRequest())
    out = []
    for p in resp.plugins:
        status, error = "ok", ""
        if p.HasField("init_err"):
            error = p.init_err.message
            status = "skip" if error.endswith("skip plugin") else "error"
        out.append({"Type": p.type, "ID": p.id, "Status": status, "Error": error})
    return out


def info(client: Client, snapshotter: str) -> dict[str, Any]:
    version = server_version(client)
    plugs = plugins(client)
    try:
        nss = [n.name for n in list_namespaces(client)]
    except PyctlError:
        nss = []
    snapshotters = sorted(
        p["ID"]
        for p in plugs
        if p["Type"] == "io.containerd.snapshotter.v1" and p["Status"] == "ok"
    )
    uuid = ""
    try:
        from google.protobuf import empty_pb2

        uuid = client.call("introspection", "Server", empty_pb2.Empty()).uuid
    except PyctlError:
        pass
    return {
        "Address": "unix://" + client.address,
        "Namespace": client.namespace,
        "ServerVersion": version["Version"],
        "ServerRevision": version["Revision"],
        "UUID": uuid,
        "Snapshotter": snapshotter,
        "Snapshotters": snapshotters,
        "Namespaces": nss,
        "Plugins": plugs,
        "Client": client_version(),
    }
