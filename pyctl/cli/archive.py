"""Archive commands: import / image import and load (into containerd), export / image export
and save (out of it)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any, TypeVar

import click

from pyctl.cli.complete import complete_images
from pyctl.cli.main import App, command, platform_options
from pyctl.errors import PyctlError, prefixed

F = TypeVar("F", bound=Callable[..., Any])
LARGE = 16 << 20  # bars only for archives at least this big (or of unknown size)


def _progress(quiet: bool, verb: str, size: int | None) -> Any:
    """Bars on a terminal for large transfers; nothing otherwise (stdout is for results)."""
    from pyctl.progress import BarProgress, QuietProgress

    if quiet or not sys.stderr.isatty() or (size is not None and size < LARGE):
        return QuietProgress()
    return BarProgress(verb)


def _noter(progress: Any) -> Callable[[str], None]:
    from pyctl.progress import BarProgress

    def note(text: str) -> None:
        if isinstance(progress, BarProgress):
            progress.note(f"note: {text}")
        else:
            click.echo(f"note: {text}", err=True)

    return note


def _file_size(path: str) -> int | None:
    try:
        return os.stat(path).st_size if path != "-" else None
    except OSError:
        return None


# import / load ------------------------------------------------------------------------------


def _import(
    app: App,
    path: str,
    *,
    verb: str,
    base_name: str | None = None,
    digests: bool = False,
    platforms: tuple[str, ...] = (),
    all_platforms: bool = False,
    no_unpack: bool = False,
    quiet: bool = False,
) -> list[Any]:
    from pyctl.archive.names import Naming
    from pyctl.ops.archive import ImportSource, import_archive

    if path == "-" and sys.stdin.isatty():
        how = "-i FILE" if verb == "load" else "a FILE"
        raise PyctlError(f"{verb}: stdin is a terminal: give an archive with {how} or pipe one in")
    label = "stdin" if path == "-" else path
    progress = _progress(quiet, "Importing", _file_size(path))
    with progress, prefixed(f"{verb} {label}"):
        naming = Naming.create(base_name, digests=digests, name_unnamed=verb == "load")
        return import_archive(
            app.client(),
            ImportSource(path),
            naming,
            platforms=platforms,
            all_platforms=all_platforms,
            unpack=not no_unpack,
            snapshotter=app.settings.snapshotter,
            progress=progress,
            note=_noter(progress),
        )
    raise AssertionError("unreachable")


def _import_command(name: str) -> click.Command:
    @command(name)
    @click.argument("file", metavar="FILE|-", type=click.Path(dir_okay=False, allow_dash=True))
    @click.option(
        "--base-name",
        metavar="REPOSITORY",
        help="name for images the archive names only by tag (REPOSITORY:TAG); "
        "full names outside it are skipped [default: import-YYYY-MM-DD]",
    )
    @click.option("--digests", is_flag=True, help="also create REPOSITORY@DIGEST records")
    @platform_options
    @click.option("--no-unpack", is_flag=True, help="do not unpack into the snapshotter")
    @click.pass_obj
    def run(
        app: App,
        file: str,
        base_name: str | None,
        digests: bool,
        platforms: tuple[str, ...],
        all_platforms: bool,
        no_unpack: bool,
    ) -> None:
        """Import images from a tar archive (- for stdin).

        Reads OCI image layouts and docker save archives, plain or compressed with gzip or
        zstd, and prints `unpacking NAME (DIGEST)...done` for each image record made."""
        done = _import(
            app,
            file,
            verb="import",
            base_name=base_name,
            digests=digests,
            platforms=platforms,
            all_platforms=all_platforms,
            no_unpack=no_unpack,
        )
        for image in done:
            if image.unpacked:
                click.echo(f"unpacking {image.name} ({image.digest})...done")
            else:
                click.echo(f"imported {image.name} ({image.digest})")

    return run


import_cmd = _import_command("import")
image_import = _import_command("import")


def _file_option(*decls: str, help: str) -> Callable[[F], F]:
    """docker's -i / -o: a file, ``-`` (the default) for stdin / stdout."""
    path = click.Path(dir_okay=False, allow_dash=True)
    return click.option(*decls, metavar="FILE", type=path, default="-", help=help)


@command("load")
@_file_option("-i", "--input", "input_", help="read from this tar archive instead of stdin")
@platform_options
@click.option("-q", "--quiet", is_flag=True, help="no progress bars")
@click.pass_obj
def load_cmd(
    app: App, input_: str, platforms: tuple[str, ...], all_platforms: bool, quiet: bool
) -> None:
    """Load images from a tar archive (stdin by default).

    Reads docker save archives and OCI image layouts, plain or compressed with gzip or
    zstd, and prints `Loaded image: NAME` for each."""
    from pyctl.reference import familiarize

    done = _import(
        app, input_, verb="load", platforms=platforms, all_platforms=all_platforms, quiet=quiet
    )
    for image in done:
        try:
            shown = familiarize(image.name)
        except PyctlError:
            shown = image.name
        click.echo(f"Loaded image: {shown}")


# export / save ------------------------------------------------------------------------------


@contextmanager
def _output(path: str) -> Iterator[IO[bytes]]:
    if path == "-":
        if sys.stdout.isatty():
            raise PyctlError(
                "refusing to write a tar archive to a terminal (redirect stdout or name a file)"
            )
        sys.stdout.flush()
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    from pyctl.ops.archive import output_file

    with output_file(path) as f:
        yield f


def _export(
    app: App,
    out: str,
    names: tuple[str, ...],
    *,
    verb: str,
    platforms: tuple[str, ...],
    all_platforms: bool,
    skip_manifest_json: bool = False,
) -> None:
    from pyctl.ops.archive import export_images

    progress = _progress(False, "Exporting", None)
    with progress, prefixed(verb if out == "-" else f"{verb} {out}"), _output(out) as f:
        export_images(
            app.client(),
            names,
            f,
            platforms=platforms,
            all_platforms=all_platforms,
            docker_manifest=not skip_manifest_json,
            progress=progress,
            note=_noter(progress),
        )


def _export_command(name: str) -> click.Command:
    @command(name)
    @click.argument("out", metavar="OUT|-", type=click.Path(dir_okay=False, allow_dash=True))
    @click.argument(
        "names", metavar="IMAGE...", nargs=-1, required=True, shell_complete=complete_images
    )
    @platform_options
    @click.option(
        "--skip-manifest-json",
        is_flag=True,
        help="leave out the Docker manifest.json (an OCI layout only)",
    )
    @click.pass_obj
    def run(
        app: App,
        out: str,
        names: tuple[str, ...],
        platforms: tuple[str, ...],
        all_platforms: bool,
        skip_manifest_json: bool,
    ) -> None:
        """Export images to a tar archive (- for stdout).

        Writes an OCI image layout that also carries a Docker manifest.json, readable by
        ctr import, docker load and skopeo."""
        _export(
            app,
            out,
            names,
            verb="export",
            platforms=platforms,
            all_platforms=all_platforms,
            skip_manifest_json=skip_manifest_json,
        )

    return run


export_cmd = _export_command("export")
image_export = _export_command("export")


@command("save")
@click.argument(
    "names", metavar="IMAGE...", nargs=-1, required=True, shell_complete=complete_images
)
@_file_option("-o", "--output", help="write to this file instead of stdout")
@platform_options
@click.pass_obj
def save_cmd(
    app: App,
    names: tuple[str, ...],
    output: str,
    platforms: tuple[str, ...],
    all_platforms: bool,
) -> None:
    """Save images to a tar archive (stdout by default).

    The archive is the one export writes: docker load, pyctl load and ctr import read it."""
    _export(app, output, names, verb="save", platforms=platforms, all_platforms=all_platforms)


COMMANDS = [import_cmd, load_cmd, export_cmd, save_cmd]
