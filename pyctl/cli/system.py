"""System commands: namespace ls, version, info, completion."""

from __future__ import annotations

import sys
from typing import Any

import click

from pyctl.cli.main import App, PyctlGroup, command
from pyctl.errors import PyctlError

NAMESPACE_COLUMNS = [
    ("Name", "NAME"),
    ("Containers", "CONTAINERS"),
    ("Images", "IMAGES"),
    ("Labels", "LABELS"),
]


@command("ls")
@click.option("-q", "--quiet", is_flag=True, help="only display namespace names")
@click.option("--no-trunc", is_flag=True, help="accepted like every listing (nothing is cut)")
@click.option("--format", "fmt", metavar="FORMAT", help="table, json, or a Go template")
@click.pass_obj
def namespace_ls(app: App, quiet: bool, no_trunc: bool, fmt: str | None) -> None:
    """List containerd namespaces."""
    from pyctl.ops.system import list_namespaces
    from pyctl.render import Formatter

    formatter = Formatter(fmt, NAMESPACE_COLUMNS)
    namespaces = list_namespaces(app.client())
    if quiet:
        sys.stdout.write("".join(n.name + "\n" for n in namespaces))
        return
    rows = [
        {
            "Name": n.name,
            "Containers": str(n.containers),
            "Images": str(n.images),
            "Labels": ",".join(f"{k}={v}" for k, v in sorted(n.labels.items())),
        }
        for n in namespaces
    ]
    sys.stdout.write(formatter.render(rows))


@click.group("namespace", cls=PyctlGroup)
def namespace_group() -> None:
    """Manage containerd namespaces."""


namespace_group.add_command(namespace_ls)
namespace_group.aliases["list"] = "ls"


def _format_one(obj: dict[str, Any], fmt: str) -> str:
    from pyctl.render import Formatter

    spec = "{{json .}}" if fmt == "json" else fmt
    return Formatter(spec, [], fields=list(obj)).render([obj])


@command("version")
@click.option("-f", "--format", "fmt", metavar="FORMAT", help="json or a Go template")
@click.pass_obj
def version_cmd(app: App, fmt: str | None) -> None:
    """Show the pyctl and containerd versions."""
    from pyctl.ops.system import client_version, server_version

    client_info = client_version()
    server: dict[str, str] | None = None
    error: PyctlError | None = None
    try:
        server = server_version(app.client())
    except PyctlError as exc:
        error = exc
    if fmt:
        sys.stdout.write(_format_one({"Client": client_info, "Server": server}, fmt))
    else:
        lines = [
            "Client:",
            f" Version:\t{client_info['Version']}",
            f" Python:\t{client_info['Python']}",
            f" OS/Arch:\t{client_info['OsArch']}",
        ]
        if server is not None:
            lines += [
                "",
                "Server:",
                " containerd:",
                f"  Version:\t{server['Version']}",
                f"  GitCommit:\t{server['Revision']}",
            ]
        sys.stdout.write("\n".join(lines) + "\n")
    if error is not None:
        raise error


@command("info")
@click.option("-f", "--format", "fmt", metavar="FORMAT", help="json or a Go template")
@click.pass_obj
def info_cmd(app: App, fmt: str | None) -> None:
    """Show containerd server information."""
    from pyctl.ops.system import info

    data = info(app.client(), app.settings.snapshotter)
    if fmt:
        sys.stdout.write(_format_one(data, fmt))
        return
    failed = [p for p in data["Plugins"] if p["Status"] == "error"]
    skipped = [p for p in data["Plugins"] if p["Status"] == "skip"]
    lines = [
        f"Server Version: {data['ServerVersion']}",
        f"Server Revision: {data['ServerRevision']}",
        f"Address: {data['Address']}",
        f"Namespace: {data['Namespace']}",
        f"Namespaces: {', '.join(data['Namespaces']) or '-'}",
        f"Snapshotter: {data['Snapshotter']}",
        f"Snapshotters: {', '.join(data['Snapshotters']) or '-'}",
        f"Plugins: {len(data['Plugins'])} ({len(skipped)} skipped, {len(failed)} failed)",
    ]
    for p in failed:
        lines.append(f"  {p['Type']}.{p['ID']}: {p['Error']}")
    lines.append(f"Client Version: {data['Client']['Version']}")
    sys.stdout.write("\n".join(lines) + "\n")


@command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion_cmd(shell: str) -> None:
    """Print the shell completion script for SHELL.

    \b
    bash: source <(pyctl completion bash)
    zsh:  pyctl completion zsh > "${fpath[1]}/_pyctl"
    fish: pyctl completion fish > ~/.config/fish/completions/pyctl.fish
    """
    sys.stdout.write(completion_script(shell))


def completion_script(shell: str) -> str:
    from click.shell_completion import get_completion_class

    import pyctl.cli.shells  # noqa: F401 - registers pyctl's bash completion
    from pyctl.cli.main import cli

    cls = get_completion_class(shell)
    if cls is None:  # pragma: no cover - click knows the three shells
        raise PyctlError(f"unsupported shell {shell}")
    return cls(cli, {}, "pyctl", "_PYCTL_COMPLETE").source() + "\n"


COMMANDS = [namespace_group, version_cmd, info_cmd, completion_cmd]
