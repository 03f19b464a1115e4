"""The hand-made protobuf codec of the listing calls (pyctl.containerd.wire), checked against
the generated classes: what they encode, pyctl's decoders read back the same; what pyctl
encodes, they parse as the request meant."""

from __future__ import annotations

import importlib
import inspect
import json
from datetime import UTC, datetime

import pytest
from google.protobuf import any_pb2, timestamp_pb2

from pyctl._api.services.containers.v1 import containers_pb2
from pyctl._api.services.content.v1 import content_pb2
from pyctl._api.services.images.v1 import images_pb2
from pyctl._api.services.leases.v1 import leases_pb2
from pyctl._api.services.snapshots.v1 import snapshots_pb2
from pyctl._api.services.tasks.v1 import tasks_pb2
from pyctl._api.types import descriptor_pb2
from pyctl._api.types.task import task_pb2
from pyctl.containerd import containers, content, images, wire
from pyctl.containerd.client import Client
from pyctl.oci import Descriptor

WHEN = datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
DIGEST = "sha256:" + "ab" * 32
LONG = "x" * 300  # lengths above 127 take a multi-byte varint


def ts(dt: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(dt)
    return out


def test_an_image_record_reads_back() -> None:
    msg = images_pb2.Image(
        name="docker.io/library/busybox:1",
        labels={"a": "1", LONG: "é"},
        target=descriptor_pb2.Descriptor(
            media_type="application/vnd.oci.image.index.v1+json",
            digest=DIGEST,
            size=(1 << 40) + 5,
            annotations={"org.opencontainers.image.ref.name": "1"},
        ),
        created_at=ts(WHEN),
        updated_at=timestamp_pb2.Timestamp(seconds=-62135596800),  # Go's zero time
    )
    rec = images.image_record(msg.SerializeToString())
    assert rec == images.ImageRecord(
        "docker.io/library/busybox:1",
        Descriptor(
            "application/vnd.oci.image.index.v1+json",
            DIGEST,
            (1 << 40) + 5,
            {"org.opencontainers.image.ref.name": "1"},
        ),
        {"a": "1", LONG: "é"},
        WHEN,
        None,
    )
    assert images.record_from_proto(msg) == rec
    answer = images_pb2.ListImagesResponse(images=[msg, images_pb2.Image(name="b")])
    assert [r.name for r in images._records(answer.SerializeToString())] == [rec.name, "b"]
    empty = images.image_record(images_pb2.Image().SerializeToString())
    assert empty == images.ImageRecord("", Descriptor("", "", 0), {}, None, None)


def test_content_infos_read_back() -> None:
    info = content_pb2.Info(digest=DIGEST, size=7, created_at=ts(WHEN), labels={"k": "v"})
    answer = content_pb2.ListContentResponse(info=[info, content_pb2.Info(digest="d")])
    got = list(content._infos(answer.SerializeToString()))
    assert got == [content.ContentInfo(DIGEST, 7, WHEN, {"k": "v"}), ("d", 0, None, {})]
    single = content_pb2.InfoResponse(info=info).SerializeToString()
    assert wire.only(single, 1, content.content_info, "an InfoResponse") == got[0]
    with pytest.raises(wire.WireError, match="an InfoResponse without field 1"):
        wire.only(b"", 1, content.content_info, "an InfoResponse")


def test_a_raw_request_is_encoded_and_shown_from_the_same_fields(
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = Client("/nonexistent.sock", "ns1", debug=True)
    fields = ((1, "digest", DIGEST), (2, "offset", 0), (3, "size", 7))
    request = client._request("content.Read", fields)
    parsed = content_pb2.ReadContentRequest.FromString(request)
    assert (parsed.digest, parsed.offset, parsed.size) == (DIGEST, 0, 7)
    err = capsys.readouterr().err
    assert err == f'debug: grpc content.Read ns=ns1 {{digest: "{DIGEST}" size: 7}}\n'


def test_a_container_and_its_task_read_back() -> None:
    spec = {"ociVersion": "1.1.0", "process": {"args": ["sleep", "1"], "cwd": "/"}}
    msg = containers_pb2.Container(
        id="c1",
        labels={"nerdctl/name": "web"},
        image="docker.io/library/busybox:1",
        runtime=containers_pb2.Container.Runtime(
            name="io.containerd.runc.v2", options=any_pb2.Any(type_url="t", value=b"\x08\x01")
        ),
        spec=any_pb2.Any(type_url="types.containerd.io/opencontainers/runtime-spec/1/Spec"),
        snapshotter="overlayfs",
        snapshot_key="c1",
        created_at=ts(WHEN),
        updated_at=ts(WHEN),
        extensions={"ext": any_pb2.Any(type_url="x", value=b"y")},
        sandbox="s1",
    )
    msg.spec.value = json.dumps(spec, separators=(",", ":")).encode()
    c = containers.container(msg.SerializeToString())
    assert c == containers.Container(
        "c1",
        "docker.io/library/busybox:1",
        {"nerdctl/name": "web"},
        "io.containerd.runc.v2",
        "overlayfs",
        "c1",
        WHEN,
        spec["process"],
    )
    answer = containers_pb2.ListContainersResponse(containers=[msg, containers_pb2.Container()])
    assert [x.id for x in containers._containers(answer.SerializeToString())] == ["c1", ""]
    streamed = containers_pb2.ListContainerMessage(container=msg).SerializeToString()
    assert containers._containers(streamed) == [c]

    proc = task_pb2.Process(
        container_id="", id="c1", pid=4321, status=task_pb2.STOPPED, exit_status=137
    )
    proc.exited_at.CopyFrom(ts(WHEN))
    assert containers.task(proc.SerializeToString()) == containers.Task(
        "c1", 4321, "stopped", 137, WHEN
    )
    unknown = task_pb2.Process(id="c2", status=9).SerializeToString()
    assert containers.task(unknown).status == "unknown"
    listed = tasks_pb2.ListTasksResponse(tasks=[proc]).SerializeToString()
    assert [containers.task(wire.data(v)) for n, v in wire.fields(listed) if n == 1] == [
        containers.task(proc.SerializeToString())
    ]


@pytest.mark.parametrize(
    "encoded,message,want",
    [
        (
            wire.encode((1, "name==a"), (1, LONG)),
            images_pb2.ListImagesRequest,
            {"filters": ["name==a", LONG]},
        ),
        (wire.encode((1, "busybox")), images_pb2.GetImageRequest, {"name": "busybox"}),
        (wire.encode((1, DIGEST)), content_pb2.InfoRequest, {"digest": DIGEST}),
        (
            wire.encode((1, DIGEST), (2, 1 << 33), (3, 0)),
            content_pb2.ReadContentRequest,
            {"digest": DIGEST, "offset": 1 << 33},
        ),
        (
            wire.encode((1, "overlayfs"), (2, "sha256:x")),
            snapshots_pb2.UsageRequest,
            {"snapshotter": "overlayfs", "key": "sha256:x"},
        ),
        (wire.encode(), containers_pb2.ListContainersRequest, {}),
    ],
)
def test_requests_parse_as_meant(encoded: bytes, message: type, want: dict[str, object]) -> None:
    parsed = message.FromString(encoded)
    assert {f.name: v for f, v in parsed.ListFields()} == {
        k: list(v) if isinstance(v, list) else v for k, v in want.items()
    }


def test_nested_messages_and_string_maps_parse_as_meant() -> None:
    """The calls transfers make with hand-encoded requests: a lease with its labels, a blob
    added to it (a nested message), a lease deleted synchronously (a bool)."""
    labels = {"containerd.io/gc.expire": "2026-12-04T04:44:39+00:00", LONG: "", "é": "ü"}
    create = wire.encode_fields([(1, "id", "l-1"), *wire.string_map(3, "labels", labels)])
    parsed = leases_pb2.CreateRequest.FromString(create)
    assert (parsed.id, dict(parsed.labels)) == ("l-1", labels)
    add = wire.encode_fields(
        [(1, "id", "l-1"), (2, "resource", ((1, "id", DIGEST), (2, "type", "content")))]
    )
    assert leases_pb2.AddResourceRequest.FromString(add) == leases_pb2.AddResourceRequest(
        id="l-1", resource=leases_pb2.Resource(id=DIGEST, type="content")
    )
    delete = leases_pb2.DeleteRequest.FromString(wire.encode_fields([(1, "id", "l"), (2, "s", 1)]))
    assert (delete.id, delete.sync) == ("l", True)


def test_a_label_update_sets_just_its_labels() -> None:
    labels = {"containerd.io/distribution.source.reg": "a/b,c/d", "containerd.io/gone": ""}
    fields = content._label_update(DIGEST, labels)
    parsed = content_pb2.UpdateRequest.FromString(wire.encode_fields(fields))
    assert parsed.info.digest == DIGEST
    assert dict(parsed.info.labels) == labels
    assert list(parsed.update_mask.paths) == [f"labels.{k}" for k in labels]
    # --debug shows it as protobuf's text format would, nested messages in braces
    assert wire.show(fields) == (
        f'info {{digest: "{DIGEST}" labels {{key: "containerd.io/distribution.source.reg" '
        'value: "a/b,c/d"} labels {key: "containerd.io/gone"}} update_mask {paths: '
        '"labels.containerd.io/distribution.source.reg" paths: "labels.containerd.io/gone"}'
    )


def test_other_answers_read_back() -> None:
    usage = snapshots_pb2.UsageResponse(size=(1 << 35) + 1, inodes=3).SerializeToString()
    assert [wire.integer(v) for n, v in wire.fields(usage) if n == 1] == [(1 << 35) + 1]
    read = content_pb2.ReadContentResponse(offset=5, data=b"\x00" * 200).SerializeToString()
    assert [wire.data(v) for n, v in wire.fields(read) if n == 2] == [b"\x00" * 200]


def test_every_wire_type_and_large_field_numbers_are_read() -> None:
    msg = content_pb2.WriteContentResponse(offset=-3, total=1 << 62, digest=LONG)
    msg.started_at.CopyFrom(ts(WHEN))
    by_number = dict(wire.fields(msg.SerializeToString()))
    assert wire.integer(by_number[4]) == -3  # int64 below zero: ten bytes on the wire
    assert wire.integer(by_number[5]) == 1 << 62
    assert wire.text(by_number[6]) == LONG
    assert wire.timestamp(by_number[2]) == WHEN
    fixed = b"\x09" + (7).to_bytes(8, "little") + b"\x15" + (9).to_bytes(4, "little")
    assert list(wire.fields(fixed)) == [(1, 7), (2, 9)]
    big_number = b"\xa2\x06\x01z"  # field 100, length-delimited
    assert list(wire.fields(big_number)) == [(100, b"z")]


@pytest.mark.parametrize(
    "raw",
    [
        b"\x0a\x05abc",  # a length past the end
        b"\x0a",  # no length at all
        b"\x08\xff\xff",  # a varint cut short
        b"\x08" + b"\xff" * 10 + b"\x01",  # a varint over 64 bits
        b"\x0b",  # wire type 3 (groups: not in proto3)
        b"\x09\x01\x02",  # a fixed64 cut short
    ],
)
def test_a_malformed_message_is_an_error(raw: bytes) -> None:
    with pytest.raises(wire.WireError, match="malformed message from containerd"):
        list(wire.fields(raw))


def test_a_field_of_the_wrong_kind_is_an_error() -> None:
    with pytest.raises(wire.WireError):
        images.image_record(b"\x08\x01")  # name (1) as a varint
    with pytest.raises(wire.WireError):
        images.image_record(b"\x0a\x02\xff\xfe")  # name not UTF-8
    with pytest.raises(wire.WireError):
        content.content_info(b"\x10\x00" + b"\x12\x00")  # size (2) as bytes


@pytest.mark.parametrize(
    "method",
    [
        "images.List",
        "images.Get",
        "content.List",
        "content.Read",
        "content.Info",
        "snapshots.Usage",
        "containers.List",
        "containers.ListStream",
        "tasks.List",
    ],
)
def test_raw_calls_go_to_the_generated_stubs_paths(method: str) -> None:
    service, name = method.split(".")
    path = Client("/nonexistent.sock", "default")._raw_path(method)
    stubs = importlib.import_module(f"pyctl._api.services.{service}.v1.{service}_pb2_grpc")
    assert f"'{path}'" in inspect.getsource(stubs)
    assert path.endswith("/" + name)


@pytest.mark.parametrize("offset", [0, 5, 1 << 40])
def test_a_hand_made_write_frame_parses_as_a_write_request(offset: int) -> None:
    frame = content._write_frame(offset, [b"ab", LONG.encode()], 2 + len(LONG))
    parsed = content_pb2.WriteContentRequest.FromString(frame)
    assert parsed.action == content_pb2.WRITE
    assert parsed.offset == offset
    assert parsed.data == b"ab" + LONG.encode()
