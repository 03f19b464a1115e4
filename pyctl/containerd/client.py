"""The gRPC edge to containerd: one channel, namespace and lease metadata, error translation.

Everything below ``pyctl.containerd`` calls containerd through :class:`Client`; gRPC errors never
travel further up than this module — they become :class:`pyctl.errors.PyctlError` subclasses.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import grpc

from pyctl.containerd import wire
from pyctl.errors import (
    AlreadyExistsError,
    NotFoundError,
    PyctlError,
    UnreachableError,
)

T = TypeVar("T")

NAMESPACE_HEADER = "containerd-namespace"
LEASE_HEADER = "containerd-lease"
MAX_MESSAGE = 16 << 20


class ContainerdError(PyctlError):
    """containerd answered with an error that has no more specific class."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


class ContainerdNotFound(NotFoundError):
    pass


class ContainerdAlreadyExists(AlreadyExistsError):
    pass


class ContainerdUnavailable(ContainerdError):
    """UNAVAILABLE that is not a connection failure (e.g. a locked ingest)."""


def check_socket(address: str) -> None:
    """Fail early, with an operator's message, when the socket cannot be used."""
    url = "unix://" + address
    try:
        st = os.stat(address)
    except FileNotFoundError:
        raise UnreachableError(
            f"cannot connect to containerd at {url}: no such socket "
            "(is containerd running? see --address)"
        ) from None
    except PermissionError:
        raise UnreachableError(
            f"cannot connect to containerd at {url}: permission denied "
            "(run with sudo or as a user allowed to use the socket)"
        ) from None
    if not stat.S_ISSOCK(st.st_mode):
        raise UnreachableError(
            f"cannot connect to containerd at {url}: not a socket (check --address)"
        )
    if not os.access(address, os.R_OK | os.W_OK):
        raise UnreachableError(
            f"cannot connect to containerd at {url}: permission denied "
            "(run with sudo or as a user allowed to use the socket)"
        )


# gRPC details of a call whose connection broke (as opposed to one that could not connect).
_CONNECTION_LOST = ("socket closed", "stream removed", "connection reset", "broken pipe", "goaway")


def translate(err: grpc.RpcError, address: str, what: str = "") -> PyctlError:
    """Turn a gRPC error into the PyctlError an operator should see."""
    code = err.code() if hasattr(err, "code") else None
    details = (err.details() if hasattr(err, "details") else None) or str(err)
    prefix = f"{what}: " if what else ""
    low = details.lower()
    lost = any(m in low for m in _CONNECTION_LOST) and "failed to connect" not in low
    if code == grpc.StatusCode.UNAVAILABLE and lost:
        # The connection broke under a running call: containerd stopped or restarted.
        return UnreachableError(
            f"lost the connection to containerd at unix://{address} ({details.strip()}): "
            "did containerd stop or restart? Run the command again; downloads resume"
        )
    if code == grpc.StatusCode.UNAVAILABLE and (
        "connect" in details.lower()
        or "no such file" in details.lower()
        or "socket" in details.lower()
    ):
        reason = "connection refused"
        if "permission denied" in details.lower():
            return UnreachableError(
                f"cannot connect to containerd at unix://{address}: permission denied "
                "(run with sudo or as a user allowed to use the socket)"
            )
        if "no such file" in details.lower():
            reason = "no such socket"
        return UnreachableError(
            f"cannot connect to containerd at unix://{address}: {reason} "
            "(is containerd running? see --address)"
        )
    if code == grpc.StatusCode.NOT_FOUND:
        return ContainerdNotFound(prefix + details)
    if code == grpc.StatusCode.ALREADY_EXISTS:
        return ContainerdAlreadyExists(prefix + details)
    if code == grpc.StatusCode.UNAVAILABLE:
        return ContainerdUnavailable(prefix + details, code)
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return ContainerdError(f"{prefix}permission denied by containerd: {details}", code)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return ContainerdError(f"{prefix}containerd did not answer in time ({details})", code)
    if code == grpc.StatusCode.CANCELLED:
        return ContainerdError(f"{prefix}cancelled", code)
    return ContainerdError(prefix + details, code)


def _rfc3339_local(dt: datetime) -> str:
    return dt.astimezone().isoformat(timespec="seconds")


def random_id() -> str:
    """containerd-style unique part: ``<nanoseconds>-<base64url of 3 random bytes>``."""
    import base64
    import secrets

    unique = base64.urlsafe_b64encode(secrets.token_bytes(3)).decode()
    return f"{time.time_ns() % 1_000_000_000}-{unique}"


class Client:
    """A connection to one containerd socket, bound to one namespace."""

    def __init__(self, address: str, namespace: str, *, debug: bool = False) -> None:
        self.address = address
        self.namespace = namespace
        self.debug = debug
        self._channel: grpc.Channel | None = None
        self._stubs: dict[str, Any] = {}
        self.lease: str | None = None

    # connection -------------------------------------------------------------------------------

    @property
    def channel(self) -> grpc.Channel:
        if self._channel is None:
            check_socket(self.address)
            self._channel = grpc.insecure_channel(
                "unix://" + self.address,
                options=[
                    ("grpc.max_send_message_length", MAX_MESSAGE),
                    ("grpc.max_receive_message_length", MAX_MESSAGE),
                    ("grpc.enable_http_proxy", 0),
                ],
            )
        return self._channel

    def connect(self) -> None:
        """Check the socket and open the channel now, before any other work."""
        _ = self.channel

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stub(self, name: str) -> Any:
        """The generated stub for service ``name`` (e.g. ``images``), created once."""
        stub = self._stubs.get(name)
        if stub is None:
            stub = _make_stub(name, self.channel)
            self._stubs[name] = stub
        return stub

    def metadata(self, namespace: str | None = None) -> tuple[tuple[str, str], ...]:
        md: tuple[tuple[str, str], ...] = ((NAMESPACE_HEADER, namespace or self.namespace),)
        if self.lease:
            md += ((LEASE_HEADER, self.lease),)
        return md

    # calls ------------------------------------------------------------------------------------

    def _log(self, service: str, method: str, request: Any) -> None:
        if self.debug:
            text = str(request).replace("\n", " ").strip()
            if len(text) > 300:
                text = text[:300] + "…"
            # one write per line: lines of concurrent calls do not interleave
            sys.stderr.write(
                f"debug: grpc {service}.{method} ns={self.namespace}"
                f"{' lease=' + self.lease if self.lease else ''} {{{text}}}\n"
            )

    def call(
        self,
        service: str,
        method: str,
        request: Any,
        *,
        what: str = "",
        timeout: float | None = None,
        namespace: str | None = None,
    ) -> Any:
        """A unary call with namespace/lease metadata; errors translated."""
        self._log(service, method, request)
        fn = getattr(self.stub(service), method)
        try:
            return fn(request, metadata=self.metadata(namespace), timeout=timeout)
        except grpc.RpcError as err:
            raise translate(err, self.address, what) from None

    def future(
        self, service: str, method: str, request: Any, *, namespace: str | None = None
    ) -> Any:
        """Start a unary call without waiting; resolve it with :meth:`result`."""
        self._log(service, method, request)
        fn = getattr(self.stub(service), method)
        return fn.future(request, metadata=self.metadata(namespace))

    def result(self, fut: Any, what: str = "") -> Any:
        try:
            return fut.result()
        except grpc.RpcError as err:
            raise translate(err, self.address, what) from None

    def stream(
        self,
        service: str,
        method: str,
        request: Any,
        *,
        what: str = "",
        namespace: str | None = None,
    ) -> Iterator[Any]:
        """A server-streaming call, iterated with errors translated."""
        self._log(service, method, request)
        fn = getattr(self.stub(service), method)
        try:
            yield from fn(request, metadata=self.metadata(namespace))
        except grpc.RpcError as err:
            raise translate(err, self.address, what) from None

    # calls with hand-encoded messages (pyctl.containerd.wire) ----------------------------------

    def _raw(self, kind: str, method: str) -> Any:
        """The multi-callable for ``service.Method`` (``images.List``) that sends and returns
        bytes as they are."""
        fn = self._stubs.get(kind + ":" + method)
        if fn is None:
            # no (de)serializer: bytes in, bytes out
            fn = getattr(self.channel, kind)(self._raw_path(method))
            self._stubs[kind + ":" + method] = fn
        return fn

    @staticmethod
    def _raw_path(method: str) -> str:
        """``images.List`` -> ``/containerd.services.images.v1.Images/List``."""
        service, name = method.split(".")
        return f"/containerd.services.{service}.v1.{service.title()}/{name}"

    def _request(self, method: str, fields: Sequence[wire.Field]) -> bytes:
        """The encoded request; with --debug, logged as protobuf's text format shows one."""
        if self.debug:
            service, name = method.split(".")
            self._log(service, name, wire.show(fields))
        return wire.encode_fields(fields)

    def call_raw(self, method: str, *fields: wire.Field, what: str = "") -> bytes:
        """A unary call of ``service.Method`` with a request of ``fields``; the encoded
        answer."""
        request = self._request(method, fields)
        try:
            answer: bytes = self._raw("unary_unary", method)(request, metadata=self.metadata())
        except grpc.RpcError as err:
            raise translate(err, self.address, what) from None
        return answer

    def future_raw(self, method: str, *fields: wire.Field) -> Any:
        """:meth:`call_raw` started without waiting; resolve it with :meth:`result`."""
        request = self._request(method, fields)
        return self._raw("unary_unary", method).future(request, metadata=self.metadata())

    def stream_raw(self, method: str, *fields: wire.Field, what: str = "") -> Iterator[bytes]:
        """A server-streaming call with a request of ``fields``: the encoded answers."""
        request = self._request(method, fields)
        try:
            yield from self._raw("unary_stream", method)(request, metadata=self.metadata())
        except grpc.RpcError as err:
            raise translate(err, self.address, what) from None

    def bidi_raw(
        self,
        path: str,
        serializer: Callable[[Any], bytes],
        deserializer: Callable[[bytes], Any],
        requests: Iterator[Any],
    ) -> Iterator[Any]:
        """A bidirectional stream with its own request serializer (content Write sends
        pre-framed bytes); the caller translates errors."""
        key = "raw:" + path
        fn = self._stubs.get(key)
        if fn is None:
            fn = self.channel.stream_stream(
                path, request_serializer=serializer, response_deserializer=deserializer
            )
            self._stubs[key] = fn
        responses: Iterator[Any] = fn(requests, metadata=self.metadata())
        return responses

    def translate(self, err: grpc.RpcError, what: str = "") -> PyctlError:
        return translate(err, self.address, what)

    # leases -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lease_context(
        self,
        expire: timedelta = timedelta(hours=24),
        *,
        keep_on_error: Callable[[], bool] | None = None,
    ) -> Iterator[str]:
        """Create a lease, attach it to every call made inside, delete it (async) after.

        When ``keep_on_error()`` says so, a failed or interrupted operation leaves the lease
        in place: it keeps partial ingests for the next attempt to resume and expires by
        itself (an operation that wrote nothing has nothing to keep)."""
        if self.lease is not None:
            yield self.lease
            return
        lease_id = random_id()
        labels = {"containerd.io/gc.expire": _rfc3339_local(datetime.now() + expire)}
        self.call_raw(
            "leases.Create",
            (1, "id", lease_id),
            *wire.string_map(3, "labels", labels),
            what="create lease",
        )
        self.lease = lease_id
        try:
            yield lease_id
        except BaseException:
            self.lease = None
            if keep_on_error is None or not keep_on_error():
                # synchronously: what the failed operation wrote is gone when pyctl exits
                self._drop_lease(lease_id, sync=True)
            raise
        self.lease = None
        self._drop_lease(lease_id, sync=False)

    def _drop_lease(self, lease_id: str, *, sync: bool) -> None:
        with contextlib.suppress(PyctlError):
            self.call_raw("leases.Delete", (1, "id", lease_id), (2, "sync", int(sync)))


def retry_unavailable(
    fn: Callable[[], T],
    *,
    deadline: float = 60.0,
    progress: Callable[[], object] | None = None,
) -> T:
    """Retry ``fn`` while containerd says UNAVAILABLE (a locked ingest ref), with containerd's
    client backoff: a random sleep below 16 ms, doubling up to 2048 ms.

    Gives up after ``deadline`` seconds — counted from the last change of ``progress()`` when
    given (e.g. the offset of the ingest another client is writing): a slow download by
    someone else is waited for however long it takes, a stuck one is not."""
    import random

    start = time.monotonic()
    seen = _probe(progress)
    retry = 16
    while True:
        try:
            return fn()
        except ContainerdUnavailable:
            now = time.monotonic()
            if progress is not None:
                current = _probe(progress)
                if current != seen:
                    seen, start = current, now
            if now - start > deadline:
                raise
            time.sleep(random.randrange(retry) / 1000.0)
            if retry < 2048:
                retry *= 2


def _probe(progress: Callable[[], object] | None) -> object:
    if progress is None:
        return None
    try:
        return progress()
    except PyctlError:
        return None


_SERVICES = {
    "content": ("pyctl._api.services.content.v1.content_pb2_grpc", "ContentStub"),
    "images": ("pyctl._api.services.images.v1.images_pb2_grpc", "ImagesStub"),
    "leases": ("pyctl._api.services.leases.v1.leases_pb2_grpc", "LeasesStub"),
    "snapshots": ("pyctl._api.services.snapshots.v1.snapshots_pb2_grpc", "SnapshotsStub"),
    "diff": ("pyctl._api.services.diff.v1.diff_pb2_grpc", "DiffStub"),
    "containers": ("pyctl._api.services.containers.v1.containers_pb2_grpc", "ContainersStub"),
    "tasks": ("pyctl._api.services.tasks.v1.tasks_pb2_grpc", "TasksStub"),
    "namespaces": ("pyctl._api.services.namespaces.v1.namespaces_pb2_grpc", "NamespacesStub"),
    "version": ("pyctl._api.services.version.v1.version_pb2_grpc", "VersionStub"),
    "introspection": (
        "pyctl._api.services.introspection.v1.introspection_pb2_grpc",
        "IntrospectionStub",
    ),
    "events": ("pyctl._api.services.events.v1.events_pb2_grpc", "EventsStub"),
}


def _make_stub(name: str, channel: grpc.Channel) -> Any:
    import importlib

    module_name, cls_name = _SERVICES[name]
    module = importlib.import_module(module_name)
    return getattr(module, cls_name)(channel)
