"""The protobuf wire format, for the messages pyctl's listings and pushes exchange with
containerd.

``images``, ``ps``, ``push`` and the lookups every image command starts with make a handful of
calls (images/containers/tasks List, content List/Read/Info/Update, leases, snapshots Usage)
whose messages are plain proto3: strings, integers, nested messages, string maps. Importing
protobuf's runtime and the generated classes costs more than such a command does in all
(about 66M instructions, counted by callgrind, a sixth of what the interpreter, click and grpc
cost to start), so these calls send requests made by :func:`encode_fields` and their modules
read the answers with :func:`message` (a table of field number -> reader per message type)
and :func:`repeated`. tests/test_wire.py checks every request and reader against the
generated classes, whose field numbers tests/test_wire_compat.py checks against containerd's
own protos.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from pyctl.errors import PyctlError

Value = int | bytes
# A request field: number, name (for --debug), value; a tuple of fields is a nested message
# (a map<string, string> is one such message per entry: see string_map).
Field = tuple[int, str, "str | int | tuple[Field, ...]"]
T = TypeVar("T")


class WireError(PyctlError):
    def __init__(self, problem: str) -> None:
        super().__init__(f"malformed message from containerd: {problem}")


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while pos < len(buf):
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            break
    raise WireError("bad varint")


def fields(buf: bytes) -> Iterator[tuple[int, Value]]:
    """``(field number, value)`` for each field of an encoded message, in order: an int for
    varint and fixed-size fields, bytes for length-delimited ones (strings, bytes, nested
    messages, map entries; a repeated field comes once per element)."""
    pos, end = 0, len(buf)
    while pos < end:
        key = buf[pos]  # one byte for field numbers below 16, as all of these are
        if key < 0x80:
            pos += 1
        else:
            key, pos = _varint(buf, pos)
        kind = key & 7
        value: Value
        if kind == 2:
            size = buf[pos] if pos < end else 0x80
            if size < 0x80:
                pos += 1
            else:
                size, pos = _varint(buf, pos)
            if pos + size > end:
                raise WireError("truncated field")
            value = buf[pos : pos + size]
            pos += size
        elif kind == 0:
            value, pos = _varint(buf, pos)
        elif kind in (1, 5):
            width = 8 if kind == 1 else 4
            if pos + width > end:
                raise WireError("truncated field")
            value = int.from_bytes(buf[pos : pos + width], "little")
            pos += width
        else:
            raise WireError(f"wire type {kind}")
        yield key >> 3, value


def data(value: Value) -> bytes:
    if not isinstance(value, bytes):
        raise WireError("an integer where bytes belong")
    return value


def text(value: Value) -> str:
    try:
        return data(value).decode()
    except UnicodeDecodeError:
        raise WireError("a string that is not UTF-8") from None


def integer(value: Value) -> int:
    """An int64 (two's complement in 64 bits on the wire), or an unsigned or enum field."""
    if not isinstance(value, int):
        raise WireError("bytes where an integer belongs")
    return value - (1 << 64) if value >= 1 << 63 else value


def entry(value: Value) -> tuple[str, str]:
    """A ``map<string, string>`` entry."""
    key = val = ""
    for number, v in fields(data(value)):  # (not message(): entry is how it finds maps)
        if number == 1:
            key = text(v)
        elif number == 2:
            val = text(v)
    return key, val


def message(buf: bytes, readers: Mapping[int, Callable[[Value], Any]]) -> dict[int, Any]:
    """The fields of ``buf`` that ``readers`` names, each read by its reader (a map field,
    read by :func:`entry`, gathers its entries in a dict); other fields are skipped, as
    protobuf skips fields it does not know."""
    out: dict[int, Any] = {}
    for number, value in fields(buf):
        read = readers.get(number)
        if read is entry:
            key, val = entry(value)
            out.setdefault(number, {})[key] = val
        elif read is not None:
            out[number] = read(value)
    return out


def repeated(buf: bytes, number: int, read: Callable[[bytes], T]) -> list[T]:
    """Each element of the repeated message field ``number`` of ``buf``, read by ``read``."""
    return [read(data(value)) for n, value in fields(buf) if n == number]


def only(buf: bytes, number: int, read: Callable[[bytes], T], what: str) -> T:
    """The message field ``number`` of ``buf`` (a Get or Info answer), read by ``read``."""
    for found in repeated(buf, number, read):
        return found
    raise WireError(f"{what} without field {number}")


def timestamp(value: Value) -> datetime | None:
    """A google.protobuf.Timestamp as an aware datetime; None for Go's zero time (year 1) or
    before 1970, which containerd sends for "never"."""
    m = message(data(value), {1: integer, 2: integer})
    seconds, nanos = m.get(1, 0), m.get(2, 0)
    if seconds <= 0:
        return None
    return datetime.fromtimestamp(seconds + nanos / 1e9, tz=UTC)


def _key(number: int, kind: int) -> bytes:
    return encode_varint(number << 3 | kind)


def encode_varint(n: int) -> bytes:
    """A non-negative integer as a protobuf varint."""
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def encode(*items: tuple[int, str | int | bytes]) -> bytes:
    """A request message of strings, non-negative integers and nested messages (given
    encoded, as bytes): ``(field number, value)`` pairs, a repeated field given once per
    element."""
    out = bytearray()
    for number, value in items:
        if isinstance(value, int):
            out += _key(number, 0) + encode_varint(value)
        else:
            raw = value.encode() if isinstance(value, str) else value
            out += _key(number, 2) + encode_varint(len(raw)) + raw
    return bytes(out)


def encode_fields(fields: Iterable[Field]) -> bytes:
    """:func:`encode` of named fields, nested messages encoded in place."""
    return encode(
        *((number, encode_fields(v) if isinstance(v, tuple) else v) for number, _, v in fields)
    )


def show(fields: Iterable[Field]) -> str:
    """Fields as protobuf's text format shows a message (set fields only, strings quoted), for
    --debug."""
    parts = []
    for _, name, value in fields:
        if isinstance(value, tuple):
            parts.append(f"{name} {{{show(value)}}}")
        elif isinstance(value, str) and value:
            parts.append(f'{name}: "{value}"')
        elif isinstance(value, int) and value:
            parts.append(f"{name}: {value}")
    return " ".join(parts)


def string_map(number: int, name: str, mapping: Mapping[str, str]) -> tuple[Field, ...]:
    """A ``map<string, string>`` field: one entry message (key 1, value 2) per item."""
    return tuple((number, name, ((1, "key", k), (2, "value", v))) for k, v in mapping.items())
