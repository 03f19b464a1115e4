"""Dynamic shell completion: image names, container IDs and namespaces, asked from containerd.

Completion must never print an error into the user's shell: any failure yields no candidates.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # completion is rare: imported when it runs
    from click.shell_completion import CompletionItem


def _client(ctx: click.Context, namespace: str | None = None) -> Any:
    from pyctl.cli.main import global_flags
    from pyctl.config import resolve_settings
    from pyctl.containerd.client import Client

    params = global_flags(ctx)  # before and after the command: `images -n k8s.io <TAB>`
    config_file = params.pop("config_file", None)
    s = resolve_settings(params, config_path=config_file)
    return Client(s.address, namespace or s.namespace), s


def complete_images(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    from click.shell_completion import CompletionItem

    try:
        from pyctl.containerd.images import list_records
        from pyctl.ops.catalog import is_config_name, visible_records
        from pyctl.reference import familiarize

        client, _ = _client(ctx)
        with client:
            names = set()
            for r in visible_records(list_records(client), client.namespace):
                if is_config_name(r.name):  # an image ID record of the CRI, not a name
                    continue
                names.add(r.name)
                with contextlib.suppress(Exception):
                    names.add(familiarize(r.name))
        return [CompletionItem(n) for n in sorted(names) if n.startswith(incomplete)]
    except Exception:
        return []


def complete_containers(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    from click.shell_completion import CompletionItem

    try:
        from pyctl.containerd.containers import list_containers
        from pyctl.ops.containers import container_name

        client, _ = _client(ctx)
        with client:
            out = set()
            for c in list_containers(client):
                out.add(c.id)
                out.add(container_name(c))
        return [CompletionItem(n) for n in sorted(out) if n.startswith(incomplete)]
    except Exception:
        return []


def complete_objects(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:

    return complete_images(ctx, param, incomplete) + complete_containers(ctx, param, incomplete)


def complete_namespaces(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    from click.shell_completion import CompletionItem

    try:
        from pyctl._api.services.namespaces.v1 import namespaces_pb2

        client, _ = _client(ctx, namespace="default")
        with client:
            resp = client.call("namespaces", "List", namespaces_pb2.ListNamespacesRequest())
        return [CompletionItem(n.name) for n in resp.namespaces if n.name.startswith(incomplete)]
    except Exception:
        return []


def complete_registries(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Registry hosts the user has credentials for (config.json ``auths`` and ``credHelpers``)."""
    from click.shell_completion import CompletionItem

    try:
        from pyctl.registry.credentials.docker_config import DockerConfig

        hosts = DockerConfig.load().registries()
        return [CompletionItem(h) for h in hosts if h.startswith(incomplete)]
    except Exception:
        return []
