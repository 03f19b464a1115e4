"""containerd image records: get, list (messages decoded by pyctl.containerd.wire), create
(update when it exists), delete."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, NamedTuple

from pyctl.containerd import wire
from pyctl.containerd.client import Client, ContainerdAlreadyExists, ContainerdNotFound
from pyctl.oci import Descriptor


class ImageRecord(NamedTuple):
    name: str
    target: Descriptor
    labels: Mapping[str, str] = {}
    created_at: datetime | None = None
    updated_at: datetime | None = None


def descriptor(buf: bytes) -> Descriptor:
    """An encoded ``containerd.types.Descriptor``."""
    media_type, digest, size, annotations = "", "", 0, {}
    for number, value in wire.fields(buf):
        if number == 1:
            media_type = wire.text(value)
        elif number == 2:
            digest = wire.text(value)
        elif number == 3:
            size = wire.integer(value)
        elif number == 5:
            key, val = wire.entry(value)
            annotations[key] = val
    return Descriptor(media_type, digest, size, annotations)


def image_record(buf: bytes) -> ImageRecord:
    """An encoded ``Image`` (images service)."""
    name, labels, target = "", {}, Descriptor("", "", 0)
    created_at = updated_at = None
    for number, value in wire.fields(buf):
        if number == 1:
            name = wire.text(value)
        elif number == 2:
            key, val = wire.entry(value)
            labels[key] = val
        elif number == 3:
            target = descriptor(wire.data(value))
        elif number == 7:
            created_at = wire.timestamp(value)
        elif number == 8:
            updated_at = wire.timestamp(value)
    return ImageRecord(name, target, labels, created_at, updated_at)


def record_from_proto(msg: Any) -> ImageRecord:
    """An ``Image`` the generated classes decoded (answers to Create and Update)."""
    return image_record(msg.SerializeToString())


def _records(answer: bytes) -> list[ImageRecord]:
    """The images (field 1) of a GetImageResponse or ListImagesResponse."""
    return [image_record(wire.data(v)) for number, v in wire.fields(answer) if number == 1]


def _proto(rec: ImageRecord) -> Any:
    from pyctl._api.services.images.v1 import images_pb2
    from pyctl._api.types import descriptor_pb2

    return images_pb2.Image(
        name=rec.name,
        labels=dict(rec.labels),
        target=descriptor_pb2.Descriptor(
            media_type=rec.target.media_type,
            digest=rec.target.digest,
            size=rec.target.size,
            annotations=dict(rec.target.annotations),
        ),
    )


def get(client: Client, name: str) -> ImageRecord:
    answer = client.call_raw("images.Get", wire.encode((1, name)), {"name": name}, what=name)
    for record in _records(answer):
        return record
    raise wire.WireError("a GetImageResponse without an image")


def list_records(client: Client, filters: Iterable[str] = ()) -> list[ImageRecord]:
    filters = list(filters)
    request = wire.encode(*((1, f) for f in filters))
    return _records(client.call_raw("images.List", request, {"filters": filters}))


def create(client: Client, rec: ImageRecord) -> ImageRecord:
    from pyctl._api.services.images.v1 import images_pb2

    resp = client.call("images", "Create", images_pb2.CreateImageRequest(image=_proto(rec)))
    return record_from_proto(resp.image)


def put(client: Client, rec: ImageRecord, *, replace_labels: bool = False) -> ImageRecord:
    """Create the record, or point an existing one at the new target.

    Like containerd's import, only ``target`` (and the given labels, one by one) are updated, so
    labels other tools keep on the record (e.g. the CRI plugin's) survive a re-pull.
    """
    from google.protobuf import field_mask_pb2

    from pyctl._api.services.images.v1 import images_pb2

    while True:
        try:
            return create(client, rec)
        except ContainerdAlreadyExists:
            pass
        paths = ["target"]
        if replace_labels:
            paths.append("labels")
        else:
            paths.extend(f"labels.{k}" for k in rec.labels)
        try:
            resp = client.call(
                "images",
                "Update",
                images_pb2.UpdateImageRequest(
                    image=_proto(rec), update_mask=field_mask_pb2.FieldMask(paths=paths)
                ),
                what=rec.name,
            )
            return record_from_proto(resp.image)
        except ContainerdNotFound:
            continue  # deleted between Create and Update: create again


def delete(client: Client, name: str, *, sync: bool = False) -> None:
    from pyctl._api.services.images.v1 import images_pb2

    client.call("images", "Delete", images_pb2.DeleteImageRequest(name=name, sync=sync), what=name)
