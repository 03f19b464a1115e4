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
    m = wire.message(buf, _DESCRIPTOR)
    return Descriptor(m.get(1, ""), m.get(2, ""), m.get(3, 0), m.get(5, {}))


def image_record(buf: bytes) -> ImageRecord:
    """An encoded ``Image`` (images service)."""
    m = wire.message(buf, _IMAGE)
    target = m.get(3) or Descriptor("", "", 0)
    return ImageRecord(m.get(1, ""), target, m.get(2, {}), m.get(7), m.get(8))


# field number -> reader: media_type, digest, size, annotations
_DESCRIPTOR = {1: wire.text, 2: wire.text, 3: wire.integer, 5: wire.entry}
# name, labels, target, created_at, updated_at
_IMAGE = {
    1: wire.text,
    2: wire.entry,
    3: lambda v: descriptor(wire.data(v)),
    7: wire.timestamp,
    8: wire.timestamp,
}


def record_from_proto(msg: Any) -> ImageRecord:
    """An ``Image`` the generated classes decoded (answers to Create and Update)."""
    return image_record(msg.SerializeToString())


def _records(answer: bytes) -> list[ImageRecord]:
    """The images of a ListImagesResponse (field 1)."""
    return wire.repeated(answer, 1, image_record)


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
    answer = client.call_raw("images.Get", (1, "name", name), what=name)
    return wire.only(answer, 1, image_record, "a GetImageResponse")


def list_records(client: Client, filters: Iterable[str] = ()) -> list[ImageRecord]:
    answer = client.call_raw("images.List", *((1, "filters", f) for f in filters))
    return _records(answer)


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
