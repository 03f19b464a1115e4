"""`namespace ls`, `version`, `info`, `--version`/`--help`, and shell completion (static
scripts and live candidates from containerd)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from integration.conftest import BUSYBOX_NAME, PyctlRunner
from integration.helpers import assert_ok, completion_env, header_re, parse_table, unique_id
from integration.images import Archive
from integration.testbed import Containerd

REPO = Path(__file__).resolve().parent.parent
VERSION = "0.1.0"


def _ctr_server_version(containerd: Containerd) -> str:
    out = containerd.ctr("version").stdout
    server = out.split("Server:", 1)[1]
    m = re.search(r"^\s*Version:\s*(\S+)\s*$", server, re.M)
    assert m, out
    return m.group(1)


# --- namespace ls -------------------------------------------------------------------------------


def test_namespace_ls(
    pyctl: PyctlRunner, containerd: Containerd, namespace: str, busybox_image: Archive
) -> None:
    containerd.import_image(busybox_image, namespace=namespace)
    containerd.ctr("images", "tag", BUSYBOX_NAME, "example.test/ns:1", namespace=namespace)
    containerd.ctr(
        "containers", "create", BUSYBOX_NAME, unique_id("ns-ls"), "true", namespace=namespace
    )
    containerd.ctr("namespaces", "label", namespace, "team=blue")
    containerd.ctr("namespaces", "label", namespace, "env=ci")

    out = assert_ok(pyctl("namespace", "ls"))
    assert re.match(header_re("NAME", "CONTAINERS", "IMAGES", "LABELS"), out.splitlines()[0])
    table = parse_table(out)
    rows = {r["NAME"]: r for r in table.rows}
    assert rows[namespace] == {
        "NAME": namespace,
        "CONTAINERS": "1",
        "IMAGES": "2",
        "LABELS": "env=ci,team=blue",
    }
    # every namespace ctr knows, with ctr's counts
    ctr_namespaces = containerd.namespaces()
    assert sorted(rows) == sorted(ctr_namespaces)
    for ns in ctr_namespaces:
        n_ctrs = len(containerd.lines("containers", "ls", "-q", namespace=ns))
        assert rows[ns]["CONTAINERS"] == str(n_ctrs), ns
        assert rows[ns]["IMAGES"] == str(len(containerd.images(ns))), ns

    quiet = assert_ok(pyctl("namespace", "ls", "-q")).splitlines()
    assert sorted(quiet) == sorted(ctr_namespaces)
    # nerdctl's and docker's other names, and --no-trunc like every listing
    assert assert_ok(pyctl("ns", "list", "-q")).splitlines() == quiet
    assert assert_ok(pyctl("namespace", "ls", "--no-trunc")) == out
    out = assert_ok(pyctl("namespace", "ls", "--format", "{{.Name}} {{.Images}}"))
    assert f"{namespace} 2" in out.splitlines()
    objs = [
        json.loads(ln)
        for ln in assert_ok(pyctl("namespace", "ls", "--format", "json")).splitlines()
    ]
    (mine,) = [o for o in objs if o["Name"] == namespace]
    assert mine["Containers"] == "1" and mine["Labels"] == "env=ci,team=blue"


# --- version, info ------------------------------------------------------------------------------


def test_version(pyctl: PyctlRunner, containerd: Containerd) -> None:
    server = _ctr_server_version(containerd)
    out = assert_ok(pyctl("version"))
    lines = out.splitlines()
    assert lines[0] == "Client:"
    assert re.search(rf"^ Version:\s+{re.escape(VERSION)}$", out, re.M), out
    server_part = out.partition("Server:")[2]
    assert server_part, out
    assert re.search(rf"^\s+Version:\s+{re.escape(server)}$", server_part, re.M), out
    data = json.loads(assert_ok(pyctl("version", "--format", "json")))
    assert data["Client"]["Version"] == VERSION
    assert data["Server"]["Version"] == server
    assert assert_ok(pyctl("version", "--format", "{{json .Client}}")).startswith("{")


def test_info(pyctl: PyctlRunner, containerd: Containerd, namespace: str) -> None:
    server = _ctr_server_version(containerd)
    ok_snapshotters = sorted(
        p.id for p in containerd.plugins() if p.type == "io.containerd.snapshotter.v1" and p.ok
    )
    assert containerd.snapshotter in ok_snapshotters
    out = assert_ok(pyctl("info", namespace=namespace))
    fields = dict(ln.split(": ", 1) for ln in out.splitlines() if ": " in ln and ln[:1] != " ")
    assert fields["Server Version"] == server
    assert fields["Address"] == "unix://" + containerd.address
    assert fields["Namespace"] == namespace
    assert fields["Snapshotters"].split(", ") == ok_snapshotters
    if containerd.snapshotter == "overlayfs":
        assert "overlayfs" in fields["Snapshotters"].split(", ")
    assert fields["Client Version"] == VERSION
    data = json.loads(assert_ok(pyctl("info", "--format", "json")))
    assert data["ServerVersion"] == server
    assert data["Snapshotters"] == ok_snapshotters
    assert sorted(data["Namespaces"]) == sorted(containerd.namespaces())
    plugin_ids = {(p["Type"], p["ID"]) for p in data["Plugins"]}
    assert ("io.containerd.grpc.v1", "cri") in plugin_ids
    out = assert_ok(pyctl("info", "--format", "{{json .Snapshotters}}"))
    assert json.loads(out) == ok_snapshotters


# --- --version, --help: fast paths --------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--version", "-v"])
def test_version_flag(pyctl: PyctlRunner, flag: str) -> None:
    assert assert_ok(pyctl(flag)) == f"pyctl version {VERSION}\n"


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["images", "--help"]])
def test_fast_paths_do_not_import_grpc(pyctl: PyctlRunner, args: list[str]) -> None:
    proc = pyctl(*args, env={"PYTHONPROFILEIMPORTTIME": "1"}, address=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    imported = [ln.rsplit("|", 1)[-1].strip() for ln in proc.stderr.splitlines() if "|" in ln]
    assert "click" in imported  # importtime output is there
    assert not [m for m in imported if m.split(".")[0] in ("grpc", "google")], imported
    assert proc.stdout.strip()


def test_help_lists_commands(pyctl: PyctlRunner) -> None:
    out = assert_ok(pyctl("--help"))
    for cmd in ("images", "tag", "rmi", "inspect", "image", "ps", "namespace", "version"):
        assert re.search(rf"^  {cmd}\s", out, re.M), cmd
    out = assert_ok(pyctl("image", "--help"))
    for cmd in ("ls", "tag", "rm", "inspect", "prune"):
        assert re.search(rf"^  {cmd}\s", out, re.M), cmd


# --- completion ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_match_committed_files(pyctl: PyctlRunner, shell: str) -> None:
    out = assert_ok(pyctl("completion", shell))
    assert "_PYCTL_COMPLETE" in out
    committed = (REPO / "completions" / f"pyctl.{shell}").read_text()
    assert out == committed, f"completions/pyctl.{shell} is stale: regenerate it"


def _candidates(proc: subprocess.CompletedProcess[str], shell: str = "bash") -> list[str]:
    out = assert_ok(proc)
    if shell == "bash":  # "plain,VALUE" lines
        items = [ln.split(",", 1) for ln in out.splitlines() if ln]
        assert all(kind == "plain" for kind, _ in items), out
        return [value for _, value in items]
    lines = out.splitlines()  # zsh: type, value, help triples
    return [lines[i + 1] for i in range(0, len(lines), 3)]


def _complete_all(
    pyctl: PyctlRunner,
    requests: list[tuple[str, str | None]],
    shell: str = "bash",
    extra: dict[str, str] | None = None,
) -> list[list[str]]:
    """Complete each ``(words, CONTAINERD_NAMESPACE)`` (concurrently)."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        procs = list(
            pool.map(
                lambda r: pyctl(
                    namespace=r[1], env={**completion_env(r[0], shell), **(extra or {})}
                ),
                requests,
            )
        )
    return [_candidates(p, shell) for p in procs]


def test_dynamic_completion(
    pyctl: PyctlRunner, containerd: Containerd, namespace: str, busybox_image: Archive
) -> None:
    containerd.import_image(busybox_image, namespace=namespace)
    containerd.ctr("images", "tag", BUSYBOX_NAME, "example.test/comp:1", namespace=namespace)
    cid = unique_id("comp")
    containerd.ctr("containers", "create", BUSYBOX_NAME, cid, "true", namespace=namespace)
    image_names = {BUSYBOX_NAME, "busybox:latest", "example.test/comp:1"}

    (
        commands,
        rmi,
        tag,
        image_inspect,
        ns_from_words,
        inspect_prefix,
        inspect_all,
        namespaces,
        namespace_prefix,
    ) = _complete_all(
        pyctl,
        [
            ("pyctl im", None),
            ("pyctl rmi ", namespace),
            ("pyctl tag bu", namespace),
            ("pyctl image inspect ex", namespace),
            # the namespace on the command line wins over the environment
            (f"pyctl -n {namespace} rmi ", "default"),
            (f"pyctl inspect {cid[:6]}", namespace),
            ("pyctl inspect ", namespace),
            ("pyctl -n ", None),
            (f"pyctl --namespace {namespace[:-3]}", None),
        ],
    )
    assert {"images", "image"} <= set(commands)
    assert all(c.startswith("im") for c in commands) and len(commands) == len(set(commands))
    # image names from containerd (full and familiar)
    assert set(rmi) == image_names
    assert tag == ["busybox:latest"]
    assert image_inspect == ["example.test/comp:1"]
    assert set(ns_from_words) == image_names
    # inspect takes images and containers
    assert inspect_prefix == [cid]
    assert set(inspect_all) == image_names | {cid}
    assert sorted(namespaces) == sorted(containerd.namespaces())
    assert namespace_prefix == [namespace]
    # zsh speaks the same protocol
    (zsh,) = _complete_all(pyctl, [("pyctl rmi ", namespace)], shell="zsh")
    assert set(zsh) == image_names


def test_dynamic_completion_without_containerd(pyctl: PyctlRunner, tmp_path: Path) -> None:
    """No candidates and no noise in the user's shell when containerd is not there."""
    missing = {"CONTAINERD_ADDRESS": str(tmp_path / "nothing.sock")}
    assert _complete_all(pyctl, [("pyctl rmi ", None), ("pyctl -n ", None)], extra=missing) == [
        [],
        [],
    ]
    assert _complete_all(pyctl, [("pyctl -n Bad/ns rmi ", None)]) == [[]]


@pytest.mark.parametrize("args", [[], ["image"], ["namespace"], ["container"]])
def test_group_without_command_prints_help(args: list[str]) -> None:
    """`pyctl` / `pyctl image` alone print the help and exit 0, as docker does."""
    proc = subprocess.run(
        [sys.executable, "-m", "pyctl", *args], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0
    assert proc.stderr == ""
    assert proc.stdout.startswith("Usage: pyctl")
