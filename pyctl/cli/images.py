"""Image commands: images / image ls, tag, rmi, image prune, and the `image` group."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from pyctl.cli.complete import complete_images
from pyctl.cli.main import App, PyctlGroup, command, confirm_prune, fail_each

if TYPE_CHECKING:
    from pyctl.results.images import Image, ImagePlatform


def _emit(text: str) -> None:
    if text:
        sys.stdout.write(text)


def _formatter(fmt: str | None, columns: list[tuple[str, str]], headers: dict[str, str]) -> Any:
    from pyctl.render import Formatter

    return Formatter(fmt, columns, fields=list(headers), headers=headers)


def _list_options(f: Any) -> Any:
    for decorator in reversed(
        [
            click.argument("repository", required=False, shell_complete=complete_images),
            click.option(
                "-a",
                "--all",
                "show_all",
                is_flag=True,
                help="show all images, "
                "including the CRI plugin's digest-named duplicates in k8s.io",
            ),
            click.option("-q", "--quiet", is_flag=True, help="only show image IDs"),
            click.option("--digests", is_flag=True, help="show digests"),
            click.option("--no-trunc", is_flag=True, help="don't truncate output"),
            click.option(
                "--format",
                "fmt",
                metavar="FORMAT",
                help="table, json, or a Go template (e.g. '{{.Repository}}:{{.Tag}}')",
            ),
            click.option(
                "-f",
                "--filter",
                "filters",
                multiple=True,
                metavar="KEY=VALUE",
                help="reference=, dangling=, before=, since=, label= (repeatable)",
            ),
        ]
    ):
        f = decorator(f)
    return f


IMAGE_COLUMNS = [
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("ID", "IMAGE ID"),
    ("CreatedSince", "CREATED"),
    ("Platform", "PLATFORM"),
    ("Size", "SIZE"),
    ("BlobSize", "BLOB SIZE"),
]
IMAGE_HEADERS = {
    **dict(IMAGE_COLUMNS),
    "Digest": "DIGEST",
    "CreatedAt": "CREATED AT",
    "Name": "NAME",
    "ConfigDigest": "CONFIG DIGEST",
}


def image_rows(images: list[Image], no_trunc: bool) -> list[dict[str, str]]:
    """`images` rows: one per image and locally present platform (one without a platform
    when none is present)."""
    from pyctl.ops.images import repo_tag
    from pyctl.render import go_time, human_size, short_id, time_since

    rows: list[dict[str, str]] = []
    for img in images:
        repo, tag = repo_tag(img.name)
        plats: list[ImagePlatform | None] = list(img.platforms) or [None]
        for p in plats:
            created = p.created if p else img.created
            rows.append(
                {
                    "Repository": repo,
                    "Tag": tag,
                    "ID": img.digest if no_trunc else short_id(img.digest),
                    "Digest": img.digest,
                    "CreatedAt": go_time(created) if created else "",
                    "CreatedSince": time_since(created) if created else "",
                    "Name": img.name,
                    "Platform": p.platform if p else "",
                    "ConfigDigest": p.config_digest if p else "",
                    "Size": human_size(p.size if p else 0),
                    "BlobSize": human_size(p.blob_size if p else img.target_size),
                }
            )
    return rows


def _images(
    app: App,
    repository: str | None,
    show_all: bool,
    quiet: bool,
    digests: bool,
    no_trunc: bool,
    fmt: str | None,
    filters: tuple[str, ...],
) -> None:
    from pyctl.ops.images import list_images

    columns = list(IMAGE_COLUMNS)
    if digests:
        columns.insert(2, ("Digest", "DIGEST"))
    formatter = _formatter(fmt, columns, IMAGE_HEADERS)
    images = list_images(
        app.client(),
        app.settings.snapshotter,
        repository=repository,
        show_all=show_all,
        filters=filters,
    )
    rows = image_rows(images, no_trunc)
    if quiet:
        _emit("".join(f"{i}\n" for i in dict.fromkeys(r["ID"] for r in rows)))
        return
    _emit(formatter.render(rows))


@command("images")
@_list_options
@click.pass_obj
def images_cmd(app: App, /, **kw: Any) -> None:
    """List images."""
    _images(app, **kw)


@command("ls")
@_list_options
@click.pass_obj
def image_ls(app: App, /, **kw: Any) -> None:
    """List images."""
    _images(app, **kw)


def _tag(app: App, source: str, target: str) -> None:
    from pyctl.ops.images import tag

    tag(app.client(), source, target)


@command("tag")
@click.argument("source", shell_complete=complete_images)
@click.argument("target")
@click.pass_obj
def tag_cmd(app: App, source: str, target: str) -> None:
    """Create a tag TARGET that refers to SOURCE."""
    _tag(app, source, target)


def _rmi(app: App, images: tuple[str, ...], force: bool) -> None:
    from pyctl.ops.images import remove

    removed, errors = remove(app.client(), images, force=force)
    for name in removed:
        click.echo(f"Untagged: {name}")
    fail_each(errors)


_rmi_args = [
    click.argument("images", nargs=-1, required=True, shell_complete=complete_images),
    click.option("-f", "--force", is_flag=True, help="remove even if a container uses it"),
]


@command("rmi")
@_rmi_args[0]
@_rmi_args[1]
@click.pass_obj
def rmi_cmd(app: App, images: tuple[str, ...], force: bool) -> None:
    """Remove one or more images (by name, short ID or digest)."""
    _rmi(app, images, force)


@command("rm")
@_rmi_args[0]
@_rmi_args[1]
@click.pass_obj
def image_rm(app: App, images: tuple[str, ...], force: bool) -> None:
    """Remove one or more images (by name, short ID or digest)."""
    _rmi(app, images, force)


@command("prune")
@click.option(
    "-a",
    "--all",
    "all_unused",
    is_flag=True,
    help="remove all images no container uses, not only dangling ones",
)
@click.option("-f", "--force", is_flag=True, help="do not ask for confirmation")
@click.pass_obj
def image_prune(app: App, all_unused: bool, force: bool) -> None:
    """Remove unused images."""
    from pyctl.ops.images import prune

    what = "all images without at least one container" if all_unused else "all dangling images"
    confirm_prune("image prune", what, force)
    from pyctl.render import human_size

    removed, reclaimed = prune(app.client(), all_unused=all_unused)
    if removed:
        click.echo("Deleted Images:")
        for name in removed:
            click.echo(f"untagged: {name}")
        click.echo()
    click.echo(f"Total reclaimed space: {human_size(reclaimed)}")


@click.group("image", cls=PyctlGroup)
def image_group() -> None:
    """Manage images."""


for _cmd in (image_ls, tag_cmd, image_rm):
    image_group.add_command(_cmd)
for _name, (_module, _attr) in {  # in docker's order, after ls, tag and rm
    "inspect": ("inspect", "image_inspect"),
    "prune": ("images", "image_prune"),
    "pull": ("registry", "pull_cmd"),
    "push": ("registry", "push_cmd"),
    "import": ("archive", "image_import"),
    "export": ("archive", "image_export"),
    "load": ("archive", "load_cmd"),
    "save": ("archive", "save_cmd"),
}.items():
    image_group.add_lazy(_name, _module, _attr)
image_group.aliases.update({"list": "ls", "remove": "rm"})  # docker's other names

COMMANDS = [images_cmd, tag_cmd, rmi_cmd, image_group]
