"""Every command and group takes the global options after its name too (SPEC "Global options"),
minus the option strings it uses for options of its own."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest

from pyctl.cli.main import _GLOBAL_OPTIONS, GlobalOption, cli

GLOBAL_NAMES = {decls[-1] for decls, _ in _GLOBAL_OPTIONS}


def walk(group: click.Group, ctx: click.Context) -> Iterator[tuple[str, click.Command]]:
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None, name
        yield f"{ctx.command_path} {name}", cmd
        if isinstance(cmd, click.Group):
            yield from walk(cmd, click.Context(cmd, info_name=name, parent=ctx))


COMMANDS = list(walk(cli, click.Context(cli, info_name="pyctl")))


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=[path for path, _ in COMMANDS])
def test_every_command_has_every_global_option_once(path: str, cmd: click.Command) -> None:
    params = cmd.get_params(click.Context(cmd))
    globals_ = [p for p in params if isinstance(p, GlobalOption)]
    assert sorted(p.name or "" for p in globals_) == sorted(GLOBAL_NAMES)
    assert cmd.get_params(click.Context(cmd)) == params  # made once, not on every call
    own = {
        o for p in params if not isinstance(p, GlobalOption) for o in (*p.opts, *p.secondary_opts)
    }
    for p in globals_:
        assert not own.intersection(p.opts), (path, p.opts)
        assert any(o.startswith("--") for o in p.opts), (path, p.name)  # the long form stays


def test_a_global_option_after_the_command_is_parsed() -> None:
    images = dict(COMMANDS)["pyctl images"]
    ctx = images.make_context("images", ["-a", "--namespace", "k8s.io", "--debug"], parent=None)
    assert ctx.params["show_all"] is True  # `images -a` is --all
    assert ctx.params["namespace"] == "k8s.io"
    assert ctx.params["debug"] is True
