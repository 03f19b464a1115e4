"""The ``pyctl`` root command: global options, the app context, and the error boundary.

Only click and stdlib are imported at module level so that ``pyctl --help`` stays fast; each
command imports the containerd/registry machinery when it runs.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import click

from pyctl import __version__
from pyctl.cli.complete import complete_namespaces
from pyctl.errors import PyctlError, UsageError

if TYPE_CHECKING:
    from pyctl.config import Settings
    from pyctl.containerd.client import Client

CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

_debug = False


class App:
    """What every command receives: resolved settings and a lazily opened containerd client."""

    def __init__(self, flags: dict[str, Any]) -> None:
        self.flags = flags
        self._settings: Settings | None = None
        self._client: Client | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from pyctl.config import resolve_settings

            flags = dict(self.flags)
            config_file = flags.pop("config_file", None)
            self._settings = resolve_settings(flags, config_path=config_file)
        return self._settings

    def client(self, namespace: str | None = None) -> Client:
        if self._client is None:
            from pyctl.containerd.client import Client

            s = self.settings
            self._client = Client(s.address, namespace or s.namespace, debug=s.debug)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def app_of(ctx: click.Context) -> App:
    root = ctx.find_root()
    if not isinstance(root.obj, App):
        root.obj = App(dict(root.params))
    return root.obj


class PyctlGroup(click.Group):
    """Keeps commands in the order they are added in `--help`."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


@click.group(cls=PyctlGroup, context_settings=CONTEXT_SETTINGS)
@click.option(
    "-a",
    "--address",
    metavar="PATH",
    help="containerd socket [env CONTAINERD_ADDRESS; default /run/containerd/containerd.sock]",
)
@click.option(
    "-n",
    "--namespace",
    metavar="NAME",
    shell_complete=complete_namespaces,
    help="containerd namespace [env CONTAINERD_NAMESPACE; default: default]",
)
@click.option(
    "--snapshotter",
    metavar="NAME",
    help="snapshotter to unpack into [env CONTAINERD_SNAPSHOTTER; default overlayfs]",
)
@click.option(
    "--hosts-dir",
    "hosts_dir",
    multiple=True,
    metavar="DIR",
    help="registry hosts directory (repeatable) [default: CRI config_path, "
    "/etc/containerd/certs.d, /etc/docker/certs.d]",
)
@click.option(
    "--containerd-config",
    metavar="FILE",
    help="containerd config with the CRI registry settings "
    "[default /etc/containerd/config.toml]",
)
@click.option(
    "--insecure-registry",
    is_flag=True,
    default=None,
    help="skip TLS verification and allow plain HTTP",
)
@click.option(
    "--debug", is_flag=True, default=None, help="log gRPC calls and HTTP requests to stderr"
)
@click.option(
    "--config",
    "config_file",
    metavar="FILE",
    envvar="PYCTL_CONFIG",
    help="pyctl.toml [env PYCTL_CONFIG; default /etc/pyctl/pyctl.toml, then "
    "~/.config/pyctl/pyctl.toml]",
)
@click.version_option(
    __version__, "-v", "--version", prog_name="pyctl", message="%(prog)s version %(version)s"
)
@click.pass_context
def cli(ctx: click.Context, /, **flags: Any) -> None:
    """A Docker-compatible command line for containerd."""
    global _debug
    app = App(flags)
    ctx.obj = app
    ctx.call_on_close(app.close)
    # Resolve now: a bad config file or namespace fails before any command runs.
    _debug = app.settings.debug


def _register() -> None:
    from pyctl.cli import containers, images, system

    for module in (images, containers, system):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def _fail(message: str, code: int) -> NoReturn:
    print(f"pyctl: error: {message}", file=sys.stderr)
    sys.exit(code)


def _usage_message(exc: click.UsageError) -> str:
    where = exc.ctx.command_path if exc.ctx is not None else "pyctl"
    return f"{exc.format_message()} (see '{where} --help')"


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        code = cli.main(args=args, prog_name="pyctl", standalone_mode=False)
    except KeyboardInterrupt:
        print("pyctl: interrupted", file=sys.stderr)
        sys.exit(130)
    except click.exceptions.Abort:
        print("pyctl: interrupted", file=sys.stderr)
        sys.exit(130)
    except click.UsageError as exc:
        _fail(_usage_message(exc), 2)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except UsageError as exc:
        _fail(exc.message, 2)
    except PyctlError as exc:
        if _debug:
            traceback.print_exc()
        _fail(exc.message, exc.exit_code)
    except BrokenPipeError:
        # Output closed early (e.g. `| head`): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
    except Exception as exc:  # a bug: say so in one line, the traceback only with --debug
        if _debug or "--debug" in args:
            traceback.print_exc()
        _fail(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for details)", 1)
    if isinstance(code, int) and code:
        sys.exit(code)
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
