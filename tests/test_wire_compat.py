"""Our proto declarations must be wire-compatible with containerd's own API protos.

Both trees are compiled into FileDescriptorSets with grpc_tools.protoc and
compared: every message, field, enum value, service and method pyctl declares
must exist upstream with the same full name, number, type, label, type name
and streaming flags. pyctl may declare a subset of upstream, never something
different.

The upstream protos come from the Debian package golang-github-containerd-
containerd-dev (containerd 1.6, gogo-annotated), plus gogo.proto
(golang-github-gogo-protobuf-dev) and google/rpc/status.proto
(golang-github-gogo-googleapis-dev). Set PYCTL_UPSTREAM_GOSRC to use a
different Go source root.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parent.parent
OUR_PROTO_DIR = ROOT / "proto"

GOSRC = Path(os.environ.get("PYCTL_UPSTREAM_GOSRC", "/usr/share/gocode/src"))
UPSTREAM_API = GOSRC / "github.com" / "containerd" / "containerd" / "api"
GOGO_ROOT = GOSRC / "github.com" / "gogo" / "protobuf"  # gogoproto/gogo.proto
GOOGLEAPIS_ROOT = GOSRC / "github.com" / "gogo" / "googleapis"  # google/rpc/status.proto

WELL_KNOWN = Path(str(resources.files("grpc_tools") / "_proto"))

FDP = descriptor_pb2.FieldDescriptorProto

# Fields pyctl declares that containerd 1.6 does not have. They were added in
# later releases at numbers 1.6 leaves unused, so 1.6 daemons skip them as
# unknown fields. Only these may be absent upstream; if the upstream tree
# does have them (newer containerd), they are checked like any other field.
ADDED_AFTER_1_6: dict[tuple[str, str], str] = {
    # containerd 1.7: timestamp used instead of "now" for created_at/updated_at.
    ("containerd.services.images.v1.CreateImageRequest", "source_date_epoch"): "1.7",
    # containerd 1.7: timestamp used instead of "now" for updated_at.
    ("containerd.services.images.v1.UpdateImageRequest", "source_date_epoch"): "1.7",
    # containerd 2.0: `optional Descriptor target = 3`, delete only if the digest matches.
    ("containerd.services.images.v1.DeleteImageRequest", "target"): "2.0",
    # containerd 1.7: sync the filesystem after applying a layer.
    ("containerd.services.diff.v1.ApplyRequest", "sync_fs"): "1.7",
    # containerd 2.0: sandbox id the container belongs to.
    ("containerd.services.containers.v1.Container", "sandbox"): "2.0",
}
# No method allow-list is needed: Containers.ListStream (listed as new in the
# notes) already exists in containerd 1.6.20, so it is checked normally.


def _missing_upstream() -> str | None:
    for path in (UPSTREAM_API, GOGO_ROOT / "gogoproto" / "gogo.proto", GOOGLEAPIS_ROOT):
        if not path.exists():
            return (
                f"upstream containerd API protos not installed ({path} missing); "
                "install golang-github-containerd-containerd-dev"
            )
    return None


def _protoc(cwd: Path, includes: Iterable[Path | str], files: list[str], out: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        *(f"-I{inc}" for inc in includes),
        f"--descriptor_set_out={out}",
        "--include_imports",
        *files,
    ]
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"protoc failed: {' '.join(cmd)}\n{result.stderr}"


def _load(path: Path) -> descriptor_pb2.FileDescriptorSet:
    fds = descriptor_pb2.FileDescriptorSet()
    fds.ParseFromString(path.read_bytes())
    return fds


@dataclass
class Index:
    messages: dict[str, descriptor_pb2.DescriptorProto]
    enums: dict[str, descriptor_pb2.EnumDescriptorProto]
    services: dict[str, descriptor_pb2.ServiceDescriptorProto]


def _walk_messages(
    prefix: str, messages: Iterable[descriptor_pb2.DescriptorProto]
) -> Iterator[tuple[str, descriptor_pb2.DescriptorProto]]:
    for msg in messages:
        name = f"{prefix}.{msg.name}"
        yield name, msg
        yield from _walk_messages(name, msg.nested_type)


def _index(files: Iterable[descriptor_pb2.FileDescriptorProto]) -> Index:
    idx = Index({}, {}, {})
    for f in files:
        pkg = f".{f.package}" if f.package else ""
        for enum in f.enum_type:
            idx.enums[f"{pkg}.{enum.name}"] = enum
        for name, msg in _walk_messages(pkg, f.message_type):
            idx.messages[name] = msg
            for enum in msg.enum_type:
                idx.enums[f"{name}.{enum.name}"] = enum
        for svc in f.service:
            idx.services[f"{pkg}.{svc.name}"] = svc
    return idx


@pytest.fixture(scope="module")
def descriptor_sets(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[descriptor_pb2.FileDescriptorSet, descriptor_pb2.FileDescriptorSet]:
    reason = _missing_upstream()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("wirecompat")

    ours = sorted(p.relative_to(OUR_PROTO_DIR).as_posix() for p in OUR_PROTO_DIR.rglob("*.proto"))
    assert ours, "no .proto files under proto/"
    _protoc(OUR_PROTO_DIR, [".", WELL_KNOWN], ours, tmp / "ours.pb")

    upstream = sorted(p.relative_to(GOSRC).as_posix() for p in UPSTREAM_API.rglob("*.proto"))
    # google/protobuf from grpc_tools first so gogo's copies never shadow it.
    _protoc(GOSRC, [WELL_KNOWN, GOSRC, GOGO_ROOT, GOOGLEAPIS_ROOT], upstream, tmp / "up.pb")
    return _load(tmp / "ours.pb"), _load(tmp / "up.pb")


@pytest.fixture(scope="module")
def indexes(
    descriptor_sets: tuple[descriptor_pb2.FileDescriptorSet, descriptor_pb2.FileDescriptorSet],
) -> tuple[Index, Index]:
    ours, upstream = descriptor_sets
    own_files = [f for f in ours.file if f.name.startswith("pyctl/")]
    assert len(own_files) >= 15, [f.name for f in own_files]
    return _index(own_files), _index(upstream.file)


def _field_sig(field: descriptor_pb2.FieldDescriptorProto) -> tuple[int, str, str, str]:
    type_name = field.type_name if field.type in (FDP.TYPE_MESSAGE, FDP.TYPE_ENUM) else ""
    return (field.number, FDP.Type.Name(field.type), FDP.Label.Name(field.label), type_name)


def test_messages_and_fields_match_upstream(indexes: tuple[Index, Index]) -> None:
    ours, upstream = indexes
    assert ".containerd.services.images.v1.Image" in ours.messages
    problems: list[str] = []
    for name, msg in sorted(ours.messages.items()):
        up = upstream.messages.get(name)
        if up is None:
            problems.append(f"message {name}: not declared upstream")
            continue
        up_fields = {f.name: f for f in up.field}
        up_numbers = {f.number: f.name for f in up.field}
        for field in msg.field:
            where = f"{name}.{field.name}"
            up_field = up_fields.get(field.name)
            if up_field is None:
                if (name.lstrip("."), field.name) not in ADDED_AFTER_1_6:
                    problems.append(f"field {where}: not upstream and not in ADDED_AFTER_1_6")
                elif field.number in up_numbers:
                    problems.append(
                        f"field {where}: number {field.number} is upstream's "
                        f"{up_numbers[field.number]!r}"
                    )
                elif any(r.start <= field.number < r.end for r in up.reserved_range):
                    problems.append(f"field {where}: number {field.number} reserved upstream")
                continue
            if _field_sig(field) != _field_sig(up_field):
                problems.append(
                    f"field {where}: ours (number, type, label, type_name)="
                    f"{_field_sig(field)} upstream={_field_sig(up_field)}"
                )
    assert not problems, "\n".join(problems)


def test_enums_match_upstream(indexes: tuple[Index, Index]) -> None:
    ours, upstream = indexes
    assert ".containerd.v1.types.Status" in ours.enums
    problems: list[str] = []
    for name, enum in sorted(ours.enums.items()):
        up = upstream.enums.get(name)
        if up is None:
            problems.append(f"enum {name}: not declared upstream")
            continue
        up_values = {v.name: v.number for v in up.value}
        for value in enum.value:
            if up_values.get(value.name) != value.number:
                problems.append(
                    f"enum value {name}.{value.name}={value.number}: "
                    f"upstream {up_values.get(value.name)}"
                )
    assert not problems, "\n".join(problems)


def test_services_match_upstream(indexes: tuple[Index, Index]) -> None:
    ours, upstream = indexes
    assert len(ours.services) == 11, sorted(ours.services)
    problems: list[str] = []
    for name, svc in sorted(ours.services.items()):
        up = upstream.services.get(name)
        if up is None:
            problems.append(f"service {name}: not declared upstream")
            continue
        up_methods = {m.name: m for m in up.method}
        for method in svc.method:
            up_method = up_methods.get(method.name)
            if up_method is None:
                problems.append(f"rpc {name}/{method.name}: not declared upstream")
                continue
            for attr in ("input_type", "output_type", "client_streaming", "server_streaming"):
                if getattr(method, attr) != getattr(up_method, attr):
                    problems.append(
                        f"rpc {name}/{method.name}: {attr} ours={getattr(method, attr)!r} "
                        f"upstream={getattr(up_method, attr)!r}"
                    )
    assert not problems, "\n".join(problems)


def test_allow_list_entries_are_declared(indexes: tuple[Index, Index]) -> None:
    ours, _ = indexes
    for msg_name, field_name in ADDED_AFTER_1_6:
        msg = ours.messages.get(f".{msg_name}")
        assert msg is not None, f"allow-listed message {msg_name} not declared by pyctl"
        assert field_name in {f.name for f in msg.field}, (
            f"allow-listed field {msg_name}.{field_name} not declared by pyctl; drop it"
        )
