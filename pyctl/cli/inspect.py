"""`inspect`, `image inspect`, `container inspect`: images and containers as docker-style JSON."""

from __future__ import annotations

import sys
from typing import Any

import click

from pyctl.cli.complete import complete_containers, complete_images, complete_objects
from pyctl.cli.main import App, command, fail_each
from pyctl.errors import NotFoundError


def _render_inspect(objects: list[Any], fmt: str | None) -> None:
    import json

    if not fmt:
        sys.stdout.write(json.dumps(objects, indent=4, ensure_ascii=False) + "\n")
        return
    from pyctl.render import Formatter

    fields = sorted({k for o in objects for k in o})
    formatter = Formatter(fmt if fmt != "json" else "{{json .}}", [], fields=fields)
    sys.stdout.write(formatter.render(objects))


def inspect_objects(app: App, names: tuple[str, ...], fmt: str | None, kind: str) -> None:
    """`inspect`: images, containers (``kind`` "image", "container" or "any") as JSON."""
    from pyctl.ops.containers import inspect_containers
    from pyctl.ops.images import inspect_images

    if fmt:  # fail on a bad template before any work
        from pyctl.render import Formatter

        Formatter(fmt if fmt != "json" else "{{json .}}", [], fields=_INSPECT_FIELDS)
    client = app.client()
    found: list[Any] = []
    missing = list(names)
    if kind in ("any", "image"):
        found, missing = inspect_images(client, app.settings.snapshotter, names)
    if kind in ("any", "container") and missing:
        more, missing = inspect_containers(client, missing)
        found.extend(more)
    if found:
        _render_inspect(found, fmt)
    if missing:
        what = {"image": "image", "container": "container"}.get(kind, "object")
        fail_each([f'no such {what}: "{name}"' for name in missing], NotFoundError)


_INSPECT_FIELDS = [
    "Id",
    "ConfigDigest",
    "RepoTags",
    "RepoDigests",
    "Parent",
    "Comment",
    "Created",
    "Author",
    "Config",
    "Architecture",
    "Variant",
    "Os",
    "Size",
    "RootFS",
    "Metadata",
    "Descriptor",
    "Platforms",
    "Name",
    "Labels",
    "Path",
    "Args",
    "State",
    "Image",
    "Driver",
    "Runtime",
    "StatusText",
]


@command("inspect")
@click.argument("names", nargs=-1, required=True, shell_complete=complete_objects)
@click.option("-f", "--format", "fmt", metavar="FORMAT", help="Go template or json")
@click.option(
    "--type",
    "kind",
    type=click.Choice(["image", "container"]),
    default=None,
    help="only look for this kind of object",
)
@click.pass_obj
def inspect_cmd(app: App, names: tuple[str, ...], fmt: str | None, kind: str | None) -> None:
    """Show low-level information on images or containers as JSON."""
    inspect_objects(app, names, fmt, kind or "any")


def _kind_inspect(kind: str, complete: Any) -> click.Command:
    """`image inspect` / `container inspect`: the one kind only."""

    @command("inspect", help=f"Show low-level information on {kind}s as JSON.")
    @click.argument("names", nargs=-1, required=True, shell_complete=complete)
    @click.option("-f", "--format", "fmt", metavar="FORMAT", help="Go template or json")
    @click.pass_obj
    def run(app: App, names: tuple[str, ...], fmt: str | None) -> None:
        inspect_objects(app, names, fmt, kind)

    return run


image_inspect = _kind_inspect("image", complete_images)
container_inspect = _kind_inspect("container", complete_containers)

COMMANDS = [inspect_cmd]
