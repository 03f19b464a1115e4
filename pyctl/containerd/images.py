"""containerd image records: get, list, create (update when it exists), delete."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, NamedTuple

from pyctl._api.services.images.v1 import images_pb2
from pyctl._api.types import descriptor_pb2
from pyctl.containerd.client import Client, ContainerdAlreadyExists, ContainerdNotFound, timestamp
from pyctl.oci import Descriptor


class ImageRecord(NamedTuple):
    name: str
    target: Descriptor
    labels: Mapping[str, str] = {}
    created_at: datetime | None = None
    updated_at: datetime | None = None


def record_from_proto(msg: Any) -> ImageRecord:
    t = msg.target
    return ImageRecord(
        name=msg.name,
        target=Descriptor(
            media_type=t.media_type,
            digest=t.digest,
            size=t.size,
            annotations=dict(t.annotations),
        ),
        labels=dict(msg.labels),
        created_at=timestamp(msg.created_at),
        updated_at=timestamp(msg.updated_at),
    )


def _proto(rec: ImageRecord) -> Any:
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
    resp = client.call("images", "Get", images_pb2.GetImageRequest(name=name), what=name)
    return record_from_proto(resp.image)


def list_records(client: Client, filters: Iterable[str] = ()) -> list[ImageRecord]:
    resp = client.call("images", "List", images_pb2.ListImagesRequest(filters=list(filters)))
    return [record_from_proto(i) for i in resp.images]


def create(client: Client, rec: ImageRecord) -> ImageRecord:
    resp = client.call("images", "Create", images_pb2.CreateImageRequest(image=_proto(rec)))
    return record_from_proto(resp.image)


def put(client: Client, rec: ImageRecord, *, replace_labels: bool = False) -> ImageRecord:
    """Create the record, or point an existing one at the new target.

    Like containerd's import, only ``target`` (and the given labels, one by one) are updated, so
    labels other tools keep on the record (e.g. the CRI plugin's) survive a re-pull.
    """
    from google.protobuf import field_mask_pb2

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
    client.call("images", "Delete", images_pb2.DeleteImageRequest(name=name, sync=sync), what=name)
