"""Container commands: ps (container ls), rm (container rm), container prune."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from pyctl.cli.complete import complete_containers
from pyctl.cli.main import App, PyctlGroup, command, confirm_prune, fail_each

if TYPE_CHECKING:
    from pyctl.results.containers import ContainerInfo


def _ps_options(f: Any) -> Any:
    for decorator in reversed(
        [
            click.option(
                "-a",
                "--all",
                "show_all",
                is_flag=True,
                help="show all containers (default shows just running)",
            ),
            click.option("-q", "--quiet", is_flag=True, help="only display container IDs"),
            click.option(
                "-n",
                "--last",
                "last",
                type=int,
                default=None,
                metavar="N",
                help="show the N last created containers (all states)",
            ),
            click.option(
                "-l",
                "--latest",
                is_flag=True,
                help="show the latest created container (all states)",
            ),
            click.option("--no-trunc", is_flag=True, help="don't truncate output"),
            click.option(
                "--format",
                "fmt",
                metavar="FORMAT",
                help="table, json, or a Go template (e.g. '{{.ID}} {{.Status}}')",
            ),
            click.option("-s", "--size", is_flag=True, help="display total file sizes"),
            click.option(
                "-f",
                "--filter",
                "filters",
                multiple=True,
                metavar="KEY=VALUE",
                help="status=, name=, id=, label=, ancestor= (repeatable)",
            ),
        ]
    ):
        f = decorator(f)
    return f


PS_COLUMNS = [
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("RunningFor", "CREATED"),
    ("Status", "STATUS"),
    ("Ports", "PORTS"),
    ("Names", "NAMES"),
]
PS_HEADERS = {**dict(PS_COLUMNS), "CreatedAt": "CREATED AT", "Labels": "LABELS", "Size": "SIZE"}


def ps_rows(containers: list[ContainerInfo], no_trunc: bool) -> list[dict[str, str]]:
    import json

    from pyctl.render import container_status, go_time, human_size, time_since

    rows = []
    for c in containers:
        cmd = c.command if no_trunc or len(c.command) <= 20 else c.command[:19] + "…"
        size = "" if c.size is None else human_size(c.size)
        if c.virtual_size is not None:
            size += f" (virtual {human_size(c.virtual_size)})"
        rows.append(
            {
                "ID": c.id if no_trunc else c.id[:12],
                "Image": c.image,
                "Command": json.dumps(cmd, ensure_ascii=False),
                "CreatedAt": go_time(c.created) if c.created else "",
                "RunningFor": time_since(c.created) if c.created else "",
                "Status": container_status(c.state, c.exit_code, c.exited_at),
                "Ports": ", ".join(c.ports),
                "Names": c.name,
                "Labels": ",".join(f"{k}={v}" for k, v in sorted(c.labels.items())),
                "State": c.state,
                "Runtime": c.runtime,
                "Size": size,
            }
        )
    return rows


def _ps(
    app: App,
    show_all: bool,
    quiet: bool,
    last: int | None,
    latest: bool,
    no_trunc: bool,
    fmt: str | None,
    size: bool,
    filters: tuple[str, ...],
) -> None:
    from pyctl.ops.containers import list_ps
    from pyctl.render import Formatter

    columns = list(PS_COLUMNS)
    if size:
        columns.append(("Size", "SIZE"))
    formatter = (
        None
        if quiet
        else Formatter(fmt, columns, fields=[*PS_HEADERS, "State", "Runtime"], headers=PS_HEADERS)
    )
    if formatter is not None and formatter.uses("Size"):
        size = True
    containers = list_ps(
        app.client(),
        show_all=show_all,
        last=last,
        latest=latest,
        filters=filters,
        size=size,
    )
    if quiet:
        sys.stdout.write("".join((c.id if no_trunc else c.id[:12]) + "\n" for c in containers))
        return
    assert formatter is not None
    sys.stdout.write(formatter.render(ps_rows(containers, no_trunc)))


@command("ps")
@_ps_options
@click.pass_obj
def ps_cmd(app: App, /, **kw: Any) -> None:
    """List containers."""
    _ps(app, **kw)


@command("ls")
@_ps_options
@click.pass_obj
def container_ls(app: App, /, **kw: Any) -> None:
    """List containers."""
    _ps(app, **kw)


def _rm(app: App, containers: tuple[str, ...], force: bool) -> None:
    from pyctl.ops.containers import remove_containers

    removed, errors = remove_containers(app.client(), containers, force=force)
    for cid in removed:
        click.echo(cid)
    fail_each(errors)


@command("rm")
@click.argument("containers", nargs=-1, required=True, shell_complete=complete_containers)
@click.option(
    "-f", "--force", is_flag=True, help="kill a running container (SIGKILL) and remove it"
)
@click.pass_obj
def rm_cmd(app: App, containers: tuple[str, ...], force: bool) -> None:
    """Remove one or more containers (by ID, ID prefix or name) and their snapshots."""
    _rm(app, containers, force)


@command("prune")
@click.option("-f", "--force", is_flag=True, help="do not ask for confirmation")
@click.pass_obj
def container_prune(app: App, force: bool) -> None:
    """Remove all stopped containers."""
    from pyctl.ops.containers import prune_containers

    confirm_prune("container prune", "all stopped containers", force)
    from pyctl.render import human_size

    removed, reclaimed = prune_containers(app.client())
    if removed:
        click.echo("Deleted Containers:")
        for cid in removed:
            click.echo(cid)
        click.echo()
    click.echo(f"Total reclaimed space: {human_size(reclaimed)}")


@click.group("container", cls=PyctlGroup)
def container_group() -> None:
    """Manage containers."""


container_group.add_command(container_ls)
container_group.add_lazy("inspect", "inspect", "container_inspect")
container_group.add_command(rm_cmd)
container_group.add_command(container_prune)
container_group.aliases.update({"list": "ls", "remove": "rm"})

COMMANDS = [ps_cmd, rm_cmd, container_group]
