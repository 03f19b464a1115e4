"""Registry commands: pull, push, login, logout, hosts."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from pyctl.cli.complete import complete_images, complete_registries
from pyctl.cli.main import App, _one_line, command, platform_options
from pyctl.errors import PyctlError, UsageError, prefixed

if TYPE_CHECKING:
    from pyctl.results.check import HostsCheck


def _registry_config(app: App) -> Any:
    from pyctl.registry.connect import RegistryConfig

    return RegistryConfig.load(app.settings)


@command("pull")
@click.argument("reference", shell_complete=complete_images)
@platform_options
@click.option(
    "--unpack",
    type=click.Choice(["auto", "true", "false"]),
    default="auto",
    show_default=True,
    help="unpack into the snapshotter (auto: the platforms this machine runs)",
)
@click.option("-q", "--quiet", is_flag=True, help="print only the image reference")
@click.option(
    "--max-concurrent-downloads",
    type=click.IntRange(1, 64),
    default=3,
    show_default=True,
    help="blobs downloaded at once",
)
@click.pass_obj
def pull_cmd(
    app: App,
    reference: str,
    platforms: tuple[str, ...],
    all_platforms: bool,
    unpack: str,
    quiet: bool,
    max_concurrent_downloads: int,
) -> None:
    """Pull an image from a registry into containerd."""
    from pyctl.ops.registry import pull
    from pyctl.progress import make_progress

    rc = _registry_config(app)
    with (
        make_progress(quiet, "Downloading", "Download complete") as progress,
        prefixed(f"pull {reference}"),
    ):
        result = pull(
            app.client(),
            rc,
            reference,
            platforms=platforms,
            all_platforms=all_platforms,
            unpack=unpack,
            concurrency=max_concurrent_downloads,
            progress=progress,
        )
    if not quiet:
        progress.note(f"Digest: {result.digest}")
        status = "Image is up to date" if result.written == 0 else "Downloaded newer image"
        progress.note(f"Status: {status} for {result.reference}")
    click.echo(result.reference)


@command("push")
@click.argument("reference", shell_complete=complete_images)
@platform_options
@click.option("-q", "--quiet", is_flag=True, help="print only the final digest line")
@click.pass_obj
def push_cmd(
    app: App, reference: str, platforms: tuple[str, ...], all_platforms: bool, quiet: bool
) -> None:
    """Push an image from containerd to a registry."""
    from pyctl.ops.registry import push
    from pyctl.progress import make_progress

    rc = _registry_config(app)
    with make_progress(quiet, "Pushing", "Pushed") as progress, prefixed(f"push {reference}"):
        result = push(
            app.client(),
            rc,
            reference,
            platforms=platforms,
            all_platforms=all_platforms,
            progress=progress,
        )
    # SPEC: "REF: digest: …" (docker prints the tag alone here)
    click.echo(f"{reference}: digest: {result.digest} size: {result.size}")


@command("login")
@click.argument("server", required=False, shell_complete=complete_registries)
@click.option("-u", "--username", help="username")
@click.option("-p", "--password", help="password (insecure: prefer --password-stdin)")
@click.option("--password-stdin", is_flag=True, help="read the password from stdin")
@click.pass_obj
def login_cmd(
    app: App, server: str | None, username: str | None, password: str | None, password_stdin: bool
) -> None:
    """Log in to a registry (default: Docker Hub) and store the credentials."""
    from pyctl.ops.registry import login, registry_host

    if password is not None and password_stdin:
        raise UsageError("login: --password and --password-stdin are mutually exclusive")
    if password:
        click.echo(
            "WARNING! Using --password via the CLI is insecure. Use --password-stdin.", err=True
        )
    if password_stdin:
        if not username:
            raise UsageError("login: --password-stdin needs --username")
        password = sys.stdin.read().rstrip("\r\n")
        if not password:
            raise PyctlError("login: no password on stdin (--password-stdin)")
    rc = _registry_config(app)
    host = registry_host(server)
    if not username or not password:
        if not sys.stdin.isatty():
            raise PyctlError(
                "login: cannot prompt for credentials: stdin is not a terminal "
                "(use --username and --password-stdin)"
            )
        if not username:
            existing = rc.docker.resolve(host)
            default = existing.username if existing and existing.username else None
            username = click.prompt("Username", default=default, err=True)
        if not password:
            password = click.prompt("Password", hide_input=True, err=True)
    assert username is not None and password is not None
    with prefixed(f"login {host}"):  # e.g. a config.json that cannot be written
        login(rc, server, username, password)
    click.echo("Login Succeeded")


@command("logout")
@click.argument("server", required=False, shell_complete=complete_registries)
@click.pass_obj
def logout_cmd(app: App, server: str | None) -> None:
    """Remove stored credentials for a registry (default: Docker Hub)."""
    from pyctl.ops.registry import logout, registry_host

    with prefixed(f"logout {registry_host(server)}"):
        key, removed = logout(_registry_config(app), server)
    if removed:
        click.echo(f"Removing login credentials for {key}")
    else:
        click.echo(f"Not logged in to {key}")


@command("hosts")
@click.argument("target", metavar="REF|HOST")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option(
    "--check",
    is_flag=True,
    help="diagnose: lint containerd's config and the hosts.toml / certs.d entries that apply, "
    "then probe each endpoint a pull tries (exit 1 when a pull would fail)",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True, max=3600),
    metavar="SECONDS",
    help="with --check: the time each step may take  [default: 5]",
)
@click.pass_context
def hosts_cmd(
    ctx: click.Context, target: str, fmt: str, check: bool, timeout: float | None
) -> None:
    """Explain the registry configuration that applies to an image or registry host."""
    app: App = ctx.obj
    if check:
        _check(ctx, app, target, fmt, 5.0 if timeout is None else timeout)
        return
    if timeout is not None:
        raise UsageError("hosts: --timeout goes with --check")
    from pyctl.ops.hosts import explain_hosts

    data = explain_hosts(_registry_config(app), target)
    if fmt == "json":
        click.echo(json.dumps(data, indent=2))
        return
    lines = [
        f"Registry: {data['Registry']}",
        *([f"Image: {data['Image']}"] if data["Image"] else []),
        f"Hosts directories: {', '.join(data['HostsDirs']) or '-'}",
        f"containerd config: {data['ContainerdConfig'] or '(none)'}",
        *_containerd_config_lines(data),
        f"Docker config: {data['DockerConfig']}",
        "Endpoints, in the order they are tried:",
    ]
    for e in data["Endpoints"]:
        lines.append(f"  {e['Order']}. {e['URL']}  ({e['Role']})")
        lines.append(f"     capabilities: {', '.join(e['Capabilities'])}")
        if e["CA"]:
            lines.append(f"     ca: {', '.join(e['CA'])}")
        for c in e["ClientCerts"]:
            lines.append(
                f"     client cert: {c['Cert']}" + (f" key: {c['Key']}" if c["Key"] else "")
            )
        if e["SkipVerify"]:
            lines.append("     skip_verify: true (TLS certificates are NOT verified)")
        if e["HTTPFallback"]:
            lines.append("     plain HTTP: allowed as a fallback when the host does not speak TLS")
        for k, v in e["Headers"].items():
            lines.append(f"     header: {k}: {', '.join(v)}")
        if e["Namespace"]:
            lines.append(f"     requests add ?ns={e['Namespace']}")
        lines.append(f"     credentials: {e['Credentials']}")
        lines.append(f"     from: {e['Source']}")
    click.echo("\n".join(lines))


def _check(ctx: click.Context, app: App, target: str, fmt: str, timeout: float) -> None:
    """``hosts --check``: the findings and each endpoint's steps as a checklist (one line
    each, fix included), or one JSON document; exit 1 when a pull would fail."""
    from pyctl.ops.hosts import check_hosts

    with prefixed(f"hosts {target}"):
        report = check_hosts(app.settings, target, timeout)
    if fmt == "json":
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        click.echo("\n".join(_one_line(line) for line in _checklist(report)))
    if not report.verdict.ok:
        ctx.exit(1)


def _checklist(report: HostsCheck) -> list[str]:
    lines = [f"Registry: {report.registry}"]
    if report.reference:
        lines.append(f"Image: {report.reference}")
    lines.append("Configuration:")
    for f in report.config:
        fix = f" — fix: {f.fix}" if f.fix else ""
        lines.append(f"{f.severity!s:<4}  {f.where}  {f.message}{fix}")
    if report.not_probed:
        lines.append(f"Endpoints: not probed: {report.not_probed}")
    elif not report.endpoints:
        lines.append("Endpoints: none with the pull capability")
    else:
        lines.append("Endpoints, in the order a pull tries them:")
    for n, e in enumerate(report.endpoints, 1):
        lines.append(f"{n}. {e.url}  ({e.role}; {', '.join(e.capabilities)}; {e.config})")
        for step in e.steps:
            fix = f" — fix: {step.fix}" if step.fix else ""
            lines.append(f"   {step.severity!s:<4}  {step.step:<11}  {step.message}{fix}")
    lines.append(f"Verdict: {'ok' if report.verdict.ok else 'FAIL'}: {report.verdict.reason}")
    return lines


def _containerd_config_lines(data: dict[str, Any]) -> list[str]:
    """Imports, merge rules and CRI registry settings (with their files) of containerd's
    config, below its ``containerd config:`` line."""
    lines = [
        f"  imports: {f['Path']} (imported by {f['ImportedBy']})"
        for f in data["ContainerdConfigFiles"][1:]
    ]
    if data["ContainerdConfigRules"]:
        lines.append(f"  read as {data['ContainerdConfigRules']}")
        lines.append(f"    why: {data['ContainerdConfigRulesReason']}")
    if data["CRIRegistrySettings"]:
        lines.append("  CRI registry settings:")
    for s in data["CRIRegistrySettings"]:
        value = "(secret, not shown)" if s["Secret"] else json.dumps(s["Value"], default=str)
        lines.append(f"    {s['Key']} = {value}  (from {s['Source']})")
    if data["ContainerdConfigNote"]:
        lines.append(f"  note: {data['ContainerdConfigNote']}")
    return lines


COMMANDS = [pull_cmd, push_cmd, login_cmd, logout_cmd, hosts_cmd]
