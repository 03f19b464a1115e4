"""Global options before or after the command, as operators type them from nerdctl habits.

The command lines of the issue that asked for this run verbatim, with a Harbor-like registry
of the test bed (TLS from a CA this node does not know, Basic auth ``admin``/``Harbor12345``,
on a non-loopback address) in place of ``192.168.2.250:443``; the containerd address comes
from ``CONTAINERD_ADDRESS`` as on a node where it is exported. What they did is checked with
``ctr`` and ``skopeo``.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from integration import images
from integration.conftest import BUSYBOX_NAME, ImageFactory, PyctlRunner
from integration.faultproxy import FaultProxy
from integration.helpers import (
    assert_error,
    assert_ok,
    completion_env,
    ctr_image_digests,
    parse_table,
)
from integration.images import Archive
from integration.registry_helpers import Skopeo
from integration.testbed import CertAuthority, Containerd, HtpasswdAuth, Registry

HARBOR_USER, HARBOR_PASSWORD = "admin", "Harbor12345"


def line(pyctl: PyctlRunner, text: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``pyctl TEXT`` exactly as typed: no ``--address`` in front (CONTAINERD_ADDRESS)."""
    return pyctl(*shlex.split(text), env=env, address=False)


@pytest.fixture
def harbor(cert_authority: CertAuthority, non_loopback_ip: str) -> Iterator[FaultProxy]:
    """A registry at ``<this machine's address>:PORT`` speaking TLS with a certificate from a
    CA no hosts directory names, Basic auth ``admin``/``Harbor12345``."""
    tls = cert_authority.issue_server_cert("harbor", (non_loopback_ip, "127.0.0.1"))
    auth = HtpasswdAuth(users={HARBOR_USER: HARBOR_PASSWORD})
    with (
        Registry(tls=tls, auth=auth) as upstream,
        FaultProxy(upstream, tls=tls, host=non_loopback_ip) as proxy,
    ):
        yield proxy


def test_operators_command_lines_verbatim(
    containerd: Containerd,
    k8s_ns: str,
    pyctl: PyctlRunner,
    harbor: FaultProxy,
    image_factory: ImageFactory,
    tmp_path: Path,
) -> None:
    host = harbor.host
    ref = f"{host}/lidabai/nginx:1.23.1"
    arc = image_factory("example.test/nginx:1.23.1", variant_content="nginx")
    assert isinstance(arc.image, images.ImageSpec)
    sk = Skopeo(tmp_path)
    creds = f"{HARBOR_USER}:{HARBOR_PASSWORD}"
    sk.seed(arc.path, ref, creds=creds)

    # without --insecure-registry the unknown CA is refused (the flag is what makes it work)
    proc = line(pyctl, f"login {host} -u admin -p Harbor12345")
    assert proc.returncode == 1 and proc.stderr.splitlines() == [
        "WARNING! Using --password via the CLI is insecure. Use --password-stdin.",
        proc.stderr.splitlines()[-1],
    ]
    assert proc.stderr.splitlines()[-1].startswith(f"pyctl: error: login {host}: x509: ")

    proc = line(pyctl, f"login {host} -u admin -p Harbor12345 --insecure-registry")
    assert (proc.returncode, proc.stdout) == (0, "Login Succeeded\n"), proc.stderr
    saved = json.loads((pyctl.home / ".docker" / "config.json").read_text())
    assert host in saved["auths"]

    proc = line(pyctl, f"-n k8s.io pull {ref} --insecure-registry")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == ref
    assert ctr_image_digests(containerd, k8s_ns)[ref] == arc.image.manifest.digest

    table = parse_table(assert_ok(line(pyctl, "images -n k8s.io")))
    assert [(r["REPOSITORY"], r["TAG"]) for r in table.rows] == [
        (f"{host}/lidabai/nginx", "1.23.1")
    ]

    # push: the tag is gone from the registry first, so the push is what brings it back
    sk("delete", "--creds", creds, "--tls-verify=false", f"docker://{ref}")
    assert (
        sk(
            "inspect",
            "--raw",
            "--creds",
            creds,
            "--tls-verify=false",
            f"docker://{ref}",
            check=False,
        ).returncode
        != 0
    )
    proc = line(pyctl, f"image push {ref} --insecure-registry", CONTAINERD_NAMESPACE="k8s.io")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1].startswith(f"{ref}: digest: {arc.image.manifest.digest}")
    assert sk.raw(ref, creds=creds) == arc.image.manifest.data

    # SPEC's spelling: global options first, long forms with '='
    proc = line(pyctl, f"--insecure-registry --namespace=k8s.io push {ref}")
    assert proc.returncode == 0, proc.stderr


def names(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return assert_ok(proc).splitlines()


def test_global_options_anywhere(
    containerd: Containerd,
    namespace: str,
    more_namespaces: Callable[[str], str],
    pyctl: PyctlRunner,
    busybox_image: Archive,
    image_factory: ImageFactory,
    tmp_path: Path,
) -> None:
    other = more_namespaces("other")
    containerd.import_image(busybox_image, namespace=namespace)
    arc = image_factory("example.test/other:1", variant_content="other")
    containerd.import_image(arc, namespace=other)
    fmt = ("--format", "{{.Name}}")
    mine, theirs = [BUSYBOX_NAME], ["example.test/other:1"]

    for args in (
        ["-n", namespace, "images", *fmt],
        ["images", "-n", namespace, *fmt],
        ["images", *fmt, f"-n{namespace}"],
        ["images", f"--namespace={namespace}", *fmt],
        ["image", "-n", namespace, "ls", *fmt],
        ["image", "ls", "--namespace", namespace, *fmt],
        ["-n", other, "images", "-n", namespace, *fmt],  # the later one wins
    ):
        assert names(line(pyctl, shlex.join(args))) == mine, args
    assert names(line(pyctl, shlex.join(["images", "-n", other, *fmt]))) == theirs
    # CONTAINERD_NAMESPACE is below a flag, before or after the command
    assert (
        names(
            line(pyctl, shlex.join(["images", "-n", other, *fmt]), CONTAINERD_NAMESPACE=namespace)
        )
        == theirs
    )

    # --address after the command; -a after `images` is images' own --all
    bad = line(pyctl, shlex.join(["images", "-n", namespace, "--address", "/nonexistent.sock"]))
    assert_error(bad, "cannot connect to containerd at unix:///nonexistent.sock", stdout=None)
    assert names(line(pyctl, shlex.join(["images", "-a", "-n", namespace, *fmt]))) == mine

    # ps: -n N is ps's --last; --namespace is the global option
    for i in range(3):
        containerd.ctr("containers", "create", BUSYBOX_NAME, f"c{i}", namespace=namespace)
    assert names(line(pyctl, f"ps -a -n 1 --namespace {namespace} --format '{{{{.ID}}}}'")) == [
        "c2"
    ]
    assert names(line(pyctl, f"ps --namespace={namespace} -aq")) == ["c2", "c1", "c0"]
    assert names(line(pyctl, f"ps --namespace={other} -aq")) == []

    # --config and --debug after the command
    conf = tmp_path / "pyctl.toml"
    conf.write_text(f'namespace = "{namespace}"\n')
    assert names(line(pyctl, shlex.join(["images", "--config", str(conf), *fmt]))) == mine
    debug = line(pyctl, shlex.join(["images", "--config", str(conf), "-q", "--debug"]))
    assert debug.returncode == 0 and "debug: grpc images.List ns=" + namespace in debug.stderr

    # --hosts-dir before and after the command adds up, in order
    first, second = tmp_path / "hosts-a", tmp_path / "hosts-b"
    for d in (first, second):
        d.mkdir()
    proc = line(
        pyctl,
        shlex.join(
            [
                "--hosts-dir",
                str(first),
                "hosts",
                "example.test",
                "--hosts-dir",
                str(second),
                "--format",
                "json",
            ]
        ),
    )
    assert json.loads(assert_ok(proc))["HostsDirs"] == [str(first), str(second)]

    # a typo is still a usage error naming the command, with the option it resembles
    proc = line(pyctl, "images --namespaces x")
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2,
        "",
        "pyctl: error: No such option '--namespaces'. Did you mean '--namespace'? "
        "(see 'pyctl images --help')\n",
    )


def test_a_mistyped_command_gets_a_suggestion(pyctl: PyctlRunner) -> None:
    proc = line(pyctl, "pul harbor.local/app:1")
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2,
        "",
        "pyctl: error: No such command 'pul'. Did you mean 'pull'? (see 'pyctl --help')\n",
    )
    proc = line(pyctl, "container prun")
    assert proc.returncode == 2 and "Did you mean 'prune'?" in proc.stderr, proc.stderr
    # in a group too, whose commands load when they run
    proc = line(pyctl, "image pul harbor.local/app:1")
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2,
        "",
        "pyctl: error: No such command 'pul'. Did you mean 'pull'? (see 'pyctl image --help')\n",
    )


def test_help_lists_global_options(pyctl: PyctlRunner) -> None:
    for command, own in (
        (["images"], "-a, --all"),
        (["ps"], "-n, --last"),
        (["pull"], "--platform"),
        (["image", "push"], "--all-platforms"),
        (["login"], "-u, --username"),
        (["image"], None),
    ):
        out = assert_ok(line(pyctl, shlex.join([*command, "--help"])))
        options, _, shared = out.partition("\nGlobal Options:\n")
        assert shared, out
        shared = shared.split("\nCommands:\n")[0]
        for flag in (
            "--namespace NAME",
            "--address PATH",
            "--insecure-registry",
            "--hosts-dir",
            "--containerd-config",
            "--snapshotter",
            "--debug",
            "--config FILE",
        ):
            assert flag in shared, (command, flag)
            assert flag not in options, (command, flag)
        if own:
            assert own in options
            # the command's own short option is not also offered as the global one
            short = own.split(",")[0]
            assert f"{short}, --" not in shared
        else:
            assert "-n, --namespace NAME" in shared and "-a, --address PATH" in shared


def complete(pyctl: PyctlRunner, words: list[str]) -> list[str]:
    """What bash completion offers for the last of ``words`` (``pyctl`` first)."""
    proc = line(pyctl, "", **completion_env(shlex.join(words)))
    assert proc.returncode == 0, proc.stderr
    return [ln.split(",", 1)[1] for ln in proc.stdout.splitlines()]


def test_completion_offers_global_options_after_the_command(
    containerd: Containerd, namespace: str, pyctl: PyctlRunner, busybox_image: Archive
) -> None:
    containerd.import_image(busybox_image, namespace=namespace)
    offered = complete(pyctl, ["pyctl", "images", "--"])
    for flag in ("--namespace", "--address", "--insecure-registry", "--all", "--digests"):
        assert flag in offered
    assert "-a" in complete(pyctl, ["pyctl", "images", "-"])  # images' own -a (--all)
    assert complete(pyctl, ["pyctl", "pull", "--insec"]) == ["--insecure-registry"]
    # the namespace value, asked from containerd, after the command
    assert namespace in complete(pyctl, ["pyctl", "images", "-n", namespace[:-3]])
    # images completed from the namespace given after the command
    assert complete(pyctl, ["pyctl", "rmi", "--namespace", namespace, "busy"]) == ["busybox:latest"]
    # zsh and fish ask the same way
    zsh = line(pyctl, "", **completion_env("pyctl pull --insec", "zsh"))
    assert zsh.stdout.splitlines()[:2] == ["plain", "--insecure-registry"]
    fish = line(
        pyctl,
        "",
        COMP_WORDS="pyctl pull --insec",
        COMP_CWORD="--insec",
        _PYCTL_COMPLETE="fish_complete",
    )
    assert fish.stdout.split("\t")[0] == "plain,--insecure-registry"
