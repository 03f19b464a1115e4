"""Failures as the operator sees them: exit status 1 (2 for command-line syntax), exactly one
stderr line ``pyctl: error: …`` saying what failed, nothing on stdout, never a traceback."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from integration.conftest import PyctlRunner
from integration.helpers import assert_error, assert_ok, run_many
from integration.testbed import Containerd

# Commands that need containerd, with arguments that would be fine if it answered.
NEEDS_CONTAINERD = [
    ["images"],
    ["ps", "-a"],
    ["rmi", "busybox"],
    ["tag", "busybox", "foo"],
    ["inspect", "busybox"],
    ["image", "prune", "-f"],
    ["namespace", "ls"],
    ["info"],
]


# --- containerd not reachable -------------------------------------------------------------------


def test_containerd_down(pyctl: PyctlRunner, tmp_path: Path) -> None:
    sock = tmp_path / "nothing" / "containerd.sock"
    want = (f"cannot connect to containerd at unix://{sock}", "no such socket")
    run_many(
        pyctl,
        [(args, ["-a", str(sock), *args]) for args in NEEDS_CONTAINERD],
        lambda _case, proc: assert_error(proc, *want),
    )


def test_containerd_down_address_forms(pyctl: PyctlRunner, tmp_path: Path) -> None:
    sock = tmp_path / "containerd.sock"
    want = (f"cannot connect to containerd at unix://{sock}", "no such socket")
    assert_error(pyctl("--address", f"unix://{sock}", "images"), *want)
    # from the environment and from the config file (no --address from the runner)
    proc = pyctl("images", env={"CONTAINERD_ADDRESS": str(sock)}, address=False, timeout=60)
    assert_error(proc, *want)
    cfg = tmp_path / "pyctl.toml"
    cfg.write_text(f'address = "unix://{sock}"\n')
    proc = pyctl(
        "--config", str(cfg), "ps", drop=("CONTAINERD_ADDRESS",), address=False, timeout=60
    )
    assert_error(proc, *want)


def test_containerd_down_version_prints_client(pyctl: PyctlRunner, tmp_path: Path) -> None:
    sock = tmp_path / "containerd.sock"
    proc = pyctl("-a", str(sock), "version")
    assert_error(proc, "no such socket", stdout=None)
    assert proc.stdout.startswith("Client:\n")
    assert "0.1.0" in proc.stdout and "Server:" not in proc.stdout


def test_socket_nobody_listens(pyctl: PyctlRunner, tmp_path: Path) -> None:
    sock = tmp_path / "dead.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock))  # the socket file stays, nobody accepts
    assert sock.is_socket()
    for args in (["images"], ["ps"], ["namespace", "ls"]):
        proc = pyctl("-a", str(sock), *args)
        assert_error(proc, f"cannot connect to containerd at unix://{sock}", "connection refused")


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_address_not_a_socket(pyctl: PyctlRunner, tmp_path: Path, kind: str) -> None:
    path = tmp_path / "not-a-socket"
    if kind == "file":
        path.write_text("")
    else:
        path.mkdir()
    proc = pyctl("-a", str(path), "images")
    assert_error(proc, f"cannot connect to containerd at unix://{path}", "not a socket")


def test_bad_address_scheme(pyctl: PyctlRunner) -> None:
    assert_error(pyctl("-a", "tcp://127.0.0.1:1234", "images"), "tcp://127.0.0.1:1234")


# --- bad namespace ------------------------------------------------------------------------------


def test_bad_namespace_flag(pyctl: PyctlRunner) -> None:
    run_many(
        pyctl,
        [(args, ["-n", "Bad/ns", *args]) for args in (["images"], ["ps"], ["rmi", "x"], ["info"])],
        lambda _case, proc: assert_error(proc, 'invalid namespace "Bad/ns"'),
    )


def test_bad_namespace_env_and_config(pyctl: PyctlRunner, tmp_path: Path) -> None:
    assert_error(pyctl("images", namespace="Bad/ns"), 'invalid namespace "Bad/ns"')
    cfg = tmp_path / "pyctl.toml"
    cfg.write_text('namespace = "-bad-"\n')
    assert_error(pyctl("--config", str(cfg), "images"), 'invalid namespace "-bad-"')


# --- unknown objects ----------------------------------------------------------------------------


def test_unknown_image(pyctl: PyctlRunner, module_namespace: str) -> None:
    """(module_namespace is never written to: it stays empty)"""
    cases = [
        ("nope", ["rmi", "nope"]),
        ("ab" * 32, ["image", "rm", "-f", "sha256:" + "ab" * 32]),
        ("nope", ["inspect", "nope"]),
        ("deadbeef", ["image", "inspect", "deadbeef"]),
        ("nope", ["tag", "nope", "foo"]),
        ("nope", ["images", "-f", "since=nope"]),
    ]
    run_many(
        pyctl,
        cases,
        lambda query, proc: assert_error(proc, "no such", query),
        namespace=module_namespace,
    )


# --- --format -----------------------------------------------------------------------------------


def test_bad_format(pyctl: PyctlRunner, module_namespace: str) -> None:
    cases = [
        ('unknown field "Nope"', ["images", "--format", "{{.Nope}}"]),
        ("range", ["images", "--format", "{{range .}}{{.ID}}{{end}}"]),
        ("unclosed", ["images", "--format", "table {{.ID"]),
        ('unknown field "Nope"', ["ps", "-a", "--format", "{{.Nope}}"]),
        ("if", ["ps", "--format", "{{if .ID}}x{{end}}"]),
        ('unknown field "Nope"', ["namespace", "ls", "--format", "{{.Nope}}"]),
        ('unknown field "Nope"', ["inspect", "--format", "{{.Nope}}", "busybox"]),
        ("range", ["image", "inspect", "--format", "{{range .}}", "busybox"]),
        ('unknown field "Nope"', ["version", "--format", "{{.Nope}}"]),
        ("printf", ["info", "--format", "{{printf .ID}}"]),
    ]
    run_many(
        pyctl,
        cases,
        lambda fragment, proc: assert_error(proc, "template", fragment),
        namespace=module_namespace,
    )


# --- config file --------------------------------------------------------------------------------


def test_unknown_config_key(pyctl: PyctlRunner, tmp_path: Path) -> None:
    cfg = tmp_path / "pyctl.toml"
    cfg.write_text('namespce = "team"\n')
    want = (str(cfg), '"namespce"')
    assert_error(pyctl("--config", str(cfg), "images"), *want)
    assert_error(pyctl("images", env={"PYCTL_CONFIG": str(cfg)}), *want)
    # the user's file (~/.config/pyctl/pyctl.toml) is read by default
    user = pyctl.home / ".config" / "pyctl" / "pyctl.toml"
    user.parent.mkdir(parents=True)
    user.write_text("[registry]\nmirror = 1\n")
    assert_error(pyctl("ps"), str(user), '"registry"')
    # even commands that need no containerd fail on a broken config
    assert_error(pyctl("--config", str(cfg), "version"), *want)


def test_bad_config_files(pyctl: PyctlRunner, tmp_path: Path) -> None:
    cfg = tmp_path / "pyctl.toml"
    cfg.write_text('debug = "yes"\n')
    assert_error(pyctl("--config", str(cfg), "images"), str(cfg), '"debug"')
    cfg.write_text("address = \n")
    assert_error(pyctl("--config", str(cfg), "images"), str(cfg), "TOML")
    missing = tmp_path / "missing.toml"
    assert_error(pyctl("--config", str(missing), "images"), str(missing))
    assert_error(pyctl("images", env={"PYCTL_CONFIG": str(missing)}), str(missing))


def test_config_file_values_apply(
    pyctl: PyctlRunner, containerd: Containerd, namespace: str, tmp_path: Path
) -> None:
    """The positive side: namespace from the config file, overridden by env and flag."""
    containerd.ctr("namespaces", "create", namespace)
    cfg = tmp_path / "pyctl.toml"
    cfg.write_text(f'namespace = "{namespace}"\n')
    out = assert_ok(pyctl("--config", str(cfg), "info", "--format", "{{.Namespace}}"))
    assert out == namespace + "\n"
    out = assert_ok(
        pyctl("--config", str(cfg), "info", "--format", "{{.Namespace}}", namespace="other")
    )
    assert out == "other\n"
    out = assert_ok(
        pyctl("--config", str(cfg), "-n", "third", "info", "--format", "{{.Namespace}}")
    )
    assert out == "third\n"


# --- filters ------------------------------------------------------------------------------------


def test_bad_filter(pyctl: PyctlRunner, module_namespace: str) -> None:
    cases = [
        ("bogus=1", ["images", "-f", "bogus=1"]),
        ('"reference"', ["images", "-f", "reference"]),
        ("dangling=maybe", ["image", "ls", "--filter", "dangling=maybe"]),
        ("bogus=1", ["ps", "-f", "bogus=1"]),
        ("status=zzz", ["ps", "-f", "status=zzz"]),
        ('"name"', ["ps", "-a", "--filter", "name"]),
    ]
    run_many(
        pyctl,
        cases,
        lambda bad, proc: assert_error(proc, "invalid filter", bad),
        namespace=module_namespace,
    )


# --- command-line syntax: exit 2 ----------------------------------------------------------------


def test_usage_errors(pyctl: PyctlRunner) -> None:
    cases = [
        ("IMAGES", ["rmi"]),
        ("TARGET", ["tag", "busybox"]),
        ("nosuchcmd", ["nosuchcmd"]),
        ("--bogus", ["images", "--bogus"]),
        ("'x'", ["ps", "-n", "x"]),
        ("tcsh", ["completion", "tcsh"]),
        ("volume", ["inspect", "--type", "volume", "x"]),
    ]

    def check(fragment: str, proc: subprocess.CompletedProcess[str]) -> None:
        assert "--help" in assert_error(proc, fragment, code=2)

    run_many(pyctl, cases, check)
