"""The runtime spec's process object, as `ps` and `inspect` read it from a container record."""

from __future__ import annotations

import json

import pytest

from pyctl.containerd.containers import Container, spec_process

PROCESS = {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": ["sleep", "1"], "cwd": "/"}
REST = {
    "root": {"path": "rootfs"},
    "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
    "hooks": {"prestart": [{"path": "/bin/hook", "args": ["hook", "x"]}]},
    "linux": {"namespaces": [{"type": "pid"}], "maskedPaths": ["/proc/kcore"]},
}


def go_spec(version: str = "1.1.0", process: object = PROCESS) -> bytes:
    """As Go's encoding/json writes specs.Spec: no spaces, struct field order."""
    doc = {"ociVersion": version, "process": process, **REST}
    return json.dumps(doc, separators=(",", ":")).encode()


def test_a_go_written_spec_gives_its_process() -> None:
    assert spec_process(go_spec()) == PROCESS
    assert spec_process(go_spec(version='1.0.2-"dev"\\')) == PROCESS


@pytest.mark.parametrize(
    "raw",
    [
        json.dumps({"ociVersion": "1.1.0", "process": PROCESS, **REST}, indent=2).encode(),
        json.dumps({**REST, "process": PROCESS, "ociVersion": "1.1.0"}).encode(),
        json.dumps({"process": PROCESS}).encode(),
    ],
    ids=["indented", "process-last", "no-version"],
)
def test_any_other_spec_is_read_whole(raw: bytes) -> None:
    assert spec_process(raw) == PROCESS


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        json.dumps({"ociVersion": "1.1.0"}).encode(),
        go_spec(process=["sleep"]),
        go_spec(process=None),
        b'{"ociVersion":"1.1.0","process":{"args":["sl',
    ],
    ids=["empty", "text", "not-utf8", "array", "no-process", "list", "null", "truncated"],
)
def test_no_process_object_is_an_empty_one(raw: bytes) -> None:
    assert spec_process(raw) == {}


def test_the_command_is_the_command_line_then_the_args() -> None:
    def container(process: dict[str, object]) -> Container:
        return Container("c", "img", {}, "io.containerd.runc.v2", "overlayfs", "c", None, process)

    assert container(PROCESS).command == "sleep 1"
    assert container({"args": ["ping", 8]}).args == ["ping", "8"]
    assert container({"commandLine": "cmd.exe /c dir"}).command == "cmd.exe /c dir"
    assert container({"args": "not a list"}).command == ""
    assert container({}).command == ""
