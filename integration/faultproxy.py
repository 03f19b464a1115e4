"""A fault-injecting HTTP reverse proxy for registry tests.

:class:`FaultProxy` listens on 127.0.0.1:<free port> (plain HTTP, or HTTPS with ``tls=``) in
front of one upstream registry (``http://`` or ``https://`` with ``upstream_ca=``).  It forwards
every request (bodies streamed both ways, headers preserved except hop-by-hop ones; ``Host`` is
set to the upstream's and an upstream ``Location`` is rewritten to point back at the proxy) and
records each one as a :class:`ProxyRequest` (Authorization only as presence + scheme).

Faults are matched by method (``None`` = any), a path regex (``re.search`` on the path without
the query) and occurrence: a fault fires on the ``nth`` matching request (1-based) and the
following ones, ``times`` times in all (``None`` = every time).  The first due fault, in the
order added, applies to a request::

    proxy.status(503, times=1)                         # next request of any kind: 503
    proxy.status(429, headers={"Retry-After": "1"}, method="GET", path=r"/manifests/")
    proxy.truncate(1000, path=r"/blobs/sha256:")       # full Content-Length, 1000 bytes, FIN
    proxy.reset(1000, path=r"/blobs/")                 # ... then TCP RST (SO_LINGER 0)
    proxy.stall(3.0, after_bytes=10)                   # pause mid-body (or before_headers=True)
    proxy.corrupt(0)                                   # flip one body byte
    proxy.wrong_length(+5)                             # Content-Length lies
    proxy.redirect(blob_host.url, path=r"/blobs/")     # 302 to another server (path appended)
    proxy.redirect_loop(path=r"/blobs/")               # 302 to itself, forever
    proxy.head_ok_get_404()                            # blob HEAD fine, GET 404 BLOB_UNKNOWN
    proxy.replace_body(b"{}", path=r"/manifests/")     # upstream headers, other body

A second FaultProxy in front of the same registry makes a good "blob host" (CDN) to redirect
to: it records whether ``Authorization`` arrived.  requests and the installed skopeo (Go 1.19
net/http, which compares ``host:port``) both drop ``Authorization`` on a redirect to another
port of 127.0.0.1; some newer Go releases compare host names only, so for a host that
differs by name use :meth:`FaultProxy.url_for` ``("localhost")``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import socket
import ssl
import struct
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .tokenserver import BackgroundHTTPServer, QuietHandler

__all__ = ["Fault", "FaultKind", "FaultProxy", "ProxyRequest"]

FaultKind = Literal[
    "status",
    "truncate",
    "reset",
    "stall",
    "corrupt",
    "wrong_length",
    "redirect",
    "redirect_loop",
    "replace_body",
]

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_SECRET_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
_ERROR_CODES = {
    400: "UNKNOWN",
    401: "UNAUTHORIZED",
    403: "DENIED",
    404: "NOT_FOUND",
    405: "UNSUPPORTED",
    408: "UNKNOWN",
    429: "TOOMANYREQUESTS",
    500: "UNKNOWN",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "UNAVAILABLE",
}
_CHUNK = 64 * 1024
_BLOB_GET = re.compile(r"^/v2/(?P<repo>.+)/blobs/(?P<digest>[A-Za-z0-9_+.-]+:[A-Fa-f0-9=_-]+)$")
_UPLOAD_START = re.compile(r"^/v2/(?P<repo>.+)/blobs/uploads/?$")
_UPLOAD_SESSION = re.compile(r"^/v2/(?P<repo>.+)/blobs/uploads/[^/]+$")
_MANIFEST = re.compile(r"^/v2/(?P<repo>.+)/manifests/(?P<ref>[^/]+)$")


@dataclass
class Fault:
    """One programmed fault; ``seen`` counts matching requests, ``fired`` applications."""

    kind: FaultKind
    method: str | None = None
    path: str = ".*"
    nth: int = 1
    times: int | None = 1
    params: dict[str, Any] = field(default_factory=dict)
    seen: int = 0
    fired: int = 0

    def __post_init__(self) -> None:
        self._regex = re.compile(self.path)
        if self.nth < 1:
            raise ValueError("nth is 1-based")
        if self.method is not None:
            self.method = self.method.upper()

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and bool(self._regex.search(path))

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.fired >= self.times

    def _due(self) -> bool:
        return self.seen >= self.nth and not self.exhausted


@dataclass
class ProxyRequest:
    """A request the proxy received (secrets removed)."""

    seq: int
    method: str
    path: str
    query: str
    headers: dict[str, str]  # Authorization/Cookie values replaced by "<scheme> <redacted>"
    has_authorization: bool
    auth_scheme: str | None  # lowercase: "basic", "bearer", ...
    range: str | None
    content_length: int | None
    time: float
    status: int | None = None  # what the client got (None: no response / connection killed)
    fault: FaultKind | None = None
    body_bytes_in: int = 0  # request body bytes received
    body_bytes_out: int = 0  # response body bytes sent
    location: str | None = None  # response Location (after rewriting)

    @property
    def query_params(self) -> dict[str, list[str]]:
        return urllib.parse.parse_qs(self.query, keep_blank_values=True)

    @property
    def target(self) -> str:
        return self.path + (f"?{self.query}" if self.query else "")


class FaultProxy(BackgroundHTTPServer):
    """Reverse proxy with programmable faults; see the module docstring.

    ``host`` (``127.0.0.1:PORT``), ``url``, ``port``, ``upstream`` (URL), ``requests``
    (list of :class:`ProxyRequest`), ``faults``; ``ca_path`` when ``tls`` is set."""

    def __init__(
        self,
        upstream: str | Any,
        *,
        upstream_ca: str | os.PathLike[str] | None = None,
        tls: Any = None,
        host: str = "127.0.0.1",
        port: int = 0,
        upstream_timeout: float = 60.0,
    ) -> None:
        super().__init__(_ProxyHandler, host=host, port=port, tls=tls)
        if not isinstance(upstream, str):
            # a testbed.Registry (or anything with .url and maybe .ca_path)
            upstream_ca = upstream_ca or getattr(upstream, "ca_path", None)
            upstream = str(upstream.url)
        split = urllib.parse.urlsplit(upstream)
        if split.scheme not in ("http", "https") or not split.hostname:
            raise ValueError(f"bad upstream URL {upstream!r}")
        self.upstream = f"{split.scheme}://{split.netloc}"
        self.upstream_scheme = split.scheme
        self.upstream_host = split.hostname
        self.upstream_port = split.port or (443 if split.scheme == "https" else 80)
        self.upstream_netloc = split.netloc
        self.upstream_ca = Path(upstream_ca) if upstream_ca else None
        self.upstream_timeout = upstream_timeout
        self.requests: list[ProxyRequest] = []
        self.faults: list[Fault] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._seq = 0

    # --- lifecycle ---------------------------------------------------------------------------

    def _teardown(self) -> None:
        self._stop.set()
        self.stop_server()

    def __repr__(self) -> str:
        return f"FaultProxy(url={self.url!r}, upstream={self.upstream!r})"

    @property
    def ca_path(self) -> Path | None:
        return Path(self.tls.ca) if self.tls is not None else None

    def url_for(self, hostname: str) -> str:
        """This proxy's URL with another name for 127.0.0.1 (e.g. ``localhost``)."""
        return f"{self.scheme}://{hostname}:{self.port}"

    def ref(self, repo: str, tag: str = "latest") -> str:
        """``127.0.0.1:PORT/repo:tag``"""
        return f"{self.host}/{repo}:{tag}"

    def upstream_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.upstream_ca) if self.upstream_ca else None)
        return ctx

    # --- faults ------------------------------------------------------------------------------

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def clear(self) -> None:
        """Forget recorded requests (faults stay)."""
        with self._lock:
            self.requests.clear()

    def _fault(
        self,
        kind: FaultKind,
        method: str | None,
        path: str,
        nth: int,
        times: int | None,
        **params: Any,
    ) -> Fault:
        return self.add(Fault(kind, method, path, nth, times, dict(params)))

    def status(
        self,
        code: int,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        content_type: str = "application/json",
        method: str | None = None,
        path: str = ".*",
        nth: int = 1,
        times: int | None = 1,
    ) -> Fault:
        """Answer ``code`` without contacting the upstream (default body: a distribution
        error JSON for the code)."""
        if body is None:
            code_name = _ERROR_CODES.get(code, "UNKNOWN")
            body = json.dumps(
                {"errors": [{"code": code_name, "message": f"injected {code}", "detail": None}]}
            ).encode()
        return self._fault(
            "status",
            method,
            path,
            nth,
            times,
            code=code,
            headers=dict(headers or {}),
            body=body,
            content_type=content_type,
        )

    def truncate(
        self,
        after_bytes: int,
        *,
        method: str | None = None,
        path: str = ".*",
        nth: int = 1,
        times: int | None = 1,
    ) -> Fault:
        """Forward; send the upstream headers (full Content-Length), ``after_bytes`` of the
        body, then close the connection (FIN)."""
        return self._fault("truncate", method, path, nth, times, after_bytes=after_bytes)

    def reset(
        self,
        after_bytes: int = 0,
        *,
        method: str | None = None,
        path: str = ".*",
        nth: int = 1,
        times: int | None = 1,
    ) -> Fault:
        """Like :meth:`truncate` but abort with a TCP RST (SO_LINGER 0).  ``after_bytes=-1``
        resets before any response byte (not even headers)."""
        return self._fault("reset", method, path, nth, times, after_bytes=after_bytes)

    def stall(
        self,
        seconds: float,
        after_bytes: int = 0,
        *,
        before_headers: bool = False,
        method: str | None = None,
        path: str = ".*",
        nth: int = 1,
        times: int | None = 1,
    ) -> Fault:
        """Pause ``seconds`` after ``after_bytes`` body bytes (or before the status line with
        ``before_headers``), then continue normally."""
        return self._fault(
            "stall",
            method,
            path,
            nth,
            times,
            seconds=seconds,
            after_bytes=after_bytes,
            before_headers=before_headers,
        )

    def corrupt(
        self,
        offset: int = 0,
        *,
        method: str | None = None,
        path: str = ".*",
        nth: int = 1,
        times: int | None = 1,
    ) -> Fault:
        """Flip (XOR 0xff) the body byte at ``offset``; length and headers unchanged."""
        return self._fault("corrupt", method, path, nth, times, offset=offset)

    def wrong_length(
        self,
        delta: int,
        *,
        method: str | None = None,
        path: str = ".*",
        nth: int = 1,
        times: int | None = 1,
    ) -> Fault:
        """Content-Length = real + ``delta``; sends the whole body (``delta > 0``, then the
        client waits for bytes that never come until the connection closes) or only the
        claimed bytes (``delta < 0``); the connection is closed afterwards."""
        return self._fault("wrong_length", method, path, nth, times, delta=delta)

    def redirect(
        self,
        to_url: str,
        *,
        code: int = 302,
        method: str | None = None,
        path: str = ".*",
        nth: int = 1,
        times: int | None = 1,
    ) -> Fault:
        """Answer ``code`` with ``Location: to_url``; if ``to_url`` has no path (just
        ``scheme://host:port``) the request's path and query are appended."""
        return self._fault("redirect", method, path, nth, times, to_url=to_url, code=code)

    def redirect_loop(
        self,
        *,
        code: int = 302,
        method: str | None = None,
        path: str = ".*",
        nth: int = 1,
        times: int | None = None,
    ) -> Fault:
        """Redirect to the very same URL on this proxy (every time by default)."""
        return self._fault("redirect_loop", method, path, nth, times, code=code)

    def head_ok_get_404(
        self, *, path: str = r"/blobs/", nth: int = 1, times: int | None = None
    ) -> Fault:
        """HEAD passes through (200), GET answers 404 ``BLOB_UNKNOWN``."""
        body = json.dumps(
            {"errors": [{"code": "BLOB_UNKNOWN", "message": "blob unknown to registry"}]}
        ).encode()
        return self.status(404, body=body, method="GET", path=path, nth=nth, times=times)

    def replace_body(
        self,
        body: bytes,
        *,
        content_type: str | None = None,
        method: str | None = None,
        path: str = ".*",
        nth: int = 1,
        times: int | None = 1,
    ) -> Fault:
        """Forward, keep the upstream status and headers (``Docker-Content-Digest`` too), but
        send ``body`` (Content-Length adjusted) instead of the upstream's."""
        return self._fault(
            "replace_body", method, path, nth, times, body=body, content_type=content_type
        )

    def _pick(self, method: str, path: str) -> Fault | None:
        chosen: Fault | None = None
        with self._lock:
            for f in self.faults:
                if f.exhausted or not f.matches(method, path):
                    continue
                f.seen += 1
                if chosen is None and f._due():
                    f.fired += 1
                    chosen = f
        return chosen

    # --- records -----------------------------------------------------------------------------

    def _record(self, rec: ProxyRequest) -> None:
        with self._lock:
            self.requests.append(rec)

    def next_seq(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    def requests_for(
        self, method: str | None = None, path: str | None = None
    ) -> list[ProxyRequest]:
        """Recorded requests by method and path regex (``re.search``)."""
        rx = re.compile(path) if path is not None else None
        with self._lock:
            reqs = list(self.requests)
        return [
            r
            for r in reqs
            if (method is None or r.method == method.upper()) and (rx is None or rx.search(r.path))
        ]

    def blob_requests(self, digest: str | None = None, method: str = "GET") -> list[ProxyRequest]:
        """``GET`` (or ``method``) ``/v2/<repo>/blobs/<digest>`` requests (not uploads)."""
        out = []
        for r in self.requests_for(method):
            m = _BLOB_GET.match(r.path)
            if m and (digest is None or m.group("digest") == digest):
                out.append(r)
        return out

    def blob_gets(self, digest: str | None = None) -> int:
        return len(self.blob_requests(digest))

    def blob_get_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.blob_requests():
            m = _BLOB_GET.match(r.path)
            assert m is not None
            counts[m.group("digest")] = counts.get(m.group("digest"), 0) + 1
        return counts

    def ranges(self, digest: str | None = None) -> list[str | None]:
        """The ``Range`` header of each blob GET (None where absent)."""
        return [r.range for r in self.blob_requests(digest)]

    def blob_upload_starts(self, repo: str | None = None) -> int:
        """``POST /v2/<repo>/blobs/uploads/`` requests (incl. mount attempts)."""
        n = 0
        for r in self.requests_for("POST"):
            m = _UPLOAD_START.match(r.path)
            if m and (repo is None or m.group("repo") == repo):
                n += 1
        return n

    def uploaded_digests(self) -> list[str]:
        """``digest=`` of each upload-completing request (PUT on a session, or a single POST
        with ``?digest=``), in order."""
        out: list[str] = []
        for r in self.requests_for():
            if (r.method == "PUT" and _UPLOAD_SESSION.match(r.path)) or (
                r.method == "POST" and _UPLOAD_START.match(r.path)
            ):
                out.extend(r.query_params.get("digest", []))
        return out

    def blob_uploads(self, digest: str | None = None) -> int:
        """Completed-upload requests (see :meth:`uploaded_digests`), for ``digest`` or all."""
        return sum(1 for d in self.uploaded_digests() if digest is None or d == digest)

    def manifest_requests(self, method: str | None = None) -> list[ProxyRequest]:
        return [r for r in self.requests_for(method) if _MANIFEST.match(r.path)]

    def authorization_seen(self) -> bool:
        return any(r.has_authorization for r in self.requests_for())


def _redact(name: str, value: str) -> str:
    if name.lower() in _SECRET_HEADERS:
        scheme = value.strip().split(" ", 1)[0] if value.strip() else ""
        return f"{scheme} <redacted>".strip()
    return value


class _ProxyHandler(QuietHandler):
    server_version = "pyctl-faultproxy"

    @property
    def proxy(self) -> FaultProxy:
        owner = self.server.owner
        assert isinstance(owner, FaultProxy)
        return owner

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_GET
    do_POST = do_GET
    do_PUT = do_GET
    do_PATCH = do_GET
    do_DELETE = do_GET
    do_OPTIONS = do_GET

    # --- request side ------------------------------------------------------------------------

    def _request_body(self) -> Iterator[bytes]:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            yield from self.iter_chunked_body()
            return
        left = int(self.headers.get("Content-Length") or 0)
        while left > 0:
            data = self.rfile.read(min(_CHUNK, left))
            if not data:
                raise ConnectionError("client closed the request body early")
            left -= len(data)
            yield data

    def _drain(self, rec: ProxyRequest) -> None:
        for data in self._request_body():
            rec.body_bytes_in += len(data)

    def _make_record(self) -> ProxyRequest:
        split = urllib.parse.urlsplit(self.path)
        auth = self.headers.get("Authorization")
        headers: dict[str, str] = {}
        for k, v in self.headers.items():
            v = _redact(k, v)
            headers[k] = f"{headers[k]}, {v}" if k in headers else v
        cl = self.headers.get("Content-Length")
        return ProxyRequest(
            seq=self.proxy.next_seq(),
            method=self.command,
            path=split.path,
            query=split.query,
            headers=headers,
            has_authorization=auth is not None,
            auth_scheme=(auth.strip().split(" ", 1)[0].lower() or None) if auth else None,
            range=self.headers.get("Range"),
            content_length=int(cl) if cl and cl.strip().isdigit() else None,
            time=time.time(),
        )

    # --- response helpers --------------------------------------------------------------------

    def _simple(
        self,
        rec: ProxyRequest,
        code: int,
        headers: Mapping[str, str],
        body: bytes,
        content_type: str | None,
    ) -> None:
        self._drain(rec)
        self.send_response_only(code)
        names = {k.lower() for k in headers}
        for k, v in headers.items():
            self.send_header(k, v)
        if content_type and body and "content-type" not in names:
            self.send_header("Content-Type", content_type)
        if "date" not in names:
            self.send_header("Date", self.date_time_string())
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
            rec.body_bytes_out = len(body)
        rec.status = code
        rec.location = headers.get("Location")

    def _rst(self) -> None:
        """Abort the connection with a TCP RST."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.wfile.flush()
        conn = self.connection
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        fd = conn.detach()
        with contextlib.suppress(OSError):
            os.close(fd)

    def _rewrite_location(self, value: str) -> str:
        px = self.proxy
        for base in (px.upstream, f"{px.upstream_scheme}://{px.upstream_netloc}"):
            if value.startswith(base + "/") or value == base:
                return px.url + value[len(base) :]
        return value

    # --- main --------------------------------------------------------------------------------

    def _handle(self) -> None:
        px = self.proxy
        rec = self._make_record()
        px._record(rec)
        fault = px._pick(self.command, rec.path)
        if fault is not None:
            rec.fault = fault.kind
        p = fault.params if fault is not None else {}
        kind = fault.kind if fault is not None else None

        if kind == "status":
            self._simple(rec, p["code"], p["headers"], p["body"], p["content_type"])
            return
        if kind == "redirect":
            to = str(p["to_url"])
            sp = urllib.parse.urlsplit(to)
            if sp.path in ("", "/") and not sp.query:
                to = to.rstrip("/") + rec.target
            self._simple(rec, p["code"], {"Location": to}, b"", None)
            return
        if kind == "redirect_loop":
            self._simple(rec, p["code"], {"Location": px.url + rec.target}, b"", None)
            return
        if kind == "stall" and p["before_headers"]:
            px._stop.wait(p["seconds"])

        conn = self._forward(rec)
        if conn is None:
            return
        try:
            self._respond(rec, conn, kind, p)
        finally:
            conn.close()

    def _forward(self, rec: ProxyRequest) -> http.client.HTTPConnection | None:
        px = self.proxy
        conn: http.client.HTTPConnection
        if px.upstream_scheme == "https":
            conn = http.client.HTTPSConnection(
                px.upstream_host,
                px.upstream_port,
                timeout=px.upstream_timeout,
                context=px.upstream_context(),
            )
        else:
            conn = http.client.HTTPConnection(
                px.upstream_host, px.upstream_port, timeout=px.upstream_timeout
            )
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", px.upstream_netloc)
            for k, v in self.headers.items():
                if k.lower() in _HOP_BY_HOP or k.lower() == "host":
                    continue
                conn.putheader(k, v)
            if chunked:
                conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            for data in self._request_body():
                rec.body_bytes_in += len(data)
                if chunked:
                    conn.send(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                else:
                    conn.send(data)
            if chunked:
                conn.send(b"0\r\n\r\n")
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            with contextlib.suppress(OSError, http.client.HTTPException):
                self._simple(
                    rec,
                    502,
                    {},
                    json.dumps(
                        {"errors": [{"code": "UNAVAILABLE", "message": f"upstream: {e}"}]}
                    ).encode(),
                    "application/json",
                )
            self.close_connection = True
            return None
        return conn

    def _respond(
        self,
        rec: ProxyRequest,
        conn: http.client.HTTPConnection,
        kind: FaultKind | None,
        p: Mapping[str, Any],
    ) -> None:
        px = self.proxy
        try:
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            body = json.dumps({"errors": [{"code": "UNAVAILABLE", "message": f"upstream: {e}"}]})
            self._simple(rec, 502, {}, body.encode(), "application/json")
            self.close_connection = True
            return
        head = self.command == "HEAD"
        no_body = head or resp.status in (204, 304) or 100 <= resp.status < 200
        headers = [
            (k, v)
            for k, v in resp.getheaders()
            if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length"
        ]
        declared: int | None
        body_iter: Iterator[bytes]
        if kind == "replace_body":
            resp.read()
            new_body: bytes = p["body"]
            if p["content_type"]:
                headers = [(k, v) for k, v in headers if k.lower() != "content-type"]
                headers.append(("Content-Type", p["content_type"]))
            declared = len(new_body)
            body_iter = iter([] if head else [new_body])
        elif no_body:
            declared = resp.length if head else None
            up_cl = resp.getheader("Content-Length")
            if head and up_cl is not None and up_cl.isdigit():
                declared = int(up_cl)
            body_iter = iter([])
        elif resp.length is None:
            whole = resp.read()  # upstream chunked / close-delimited: buffer it
            declared = len(whole)
            body_iter = iter([whole])
        else:
            declared = resp.length
            body_iter = _iter_response(resp)

        real_length = declared
        if kind == "wrong_length" and declared is not None:
            declared = max(0, declared + int(p["delta"]))
            self.close_connection = True

        if kind == "reset" and int(p["after_bytes"]) < 0:
            rec.status = None
            self._rst()
            return

        self.send_response_only(resp.status, resp.reason)
        for k, v in headers:
            if k.lower() == "location":
                v = self._rewrite_location(v)
                rec.location = v
            self.send_header(k, v)
        if declared is not None and resp.status not in (204, 304):
            self.send_header("Content-Length", str(declared))
        self.end_headers()
        rec.status = resp.status

        limit: int | None = None  # stop after this many body bytes
        if kind in ("truncate", "reset"):
            limit = int(p["after_bytes"])
        elif kind == "wrong_length" and real_length is not None and declared is not None:
            limit = min(real_length, declared)
        stall_at = int(p["after_bytes"]) if kind == "stall" and not p["before_headers"] else None
        corrupt_at = int(p["offset"]) if kind == "corrupt" else None

        sent = 0
        stalled = False
        for data in body_iter:
            if corrupt_at is not None and sent <= corrupt_at < sent + len(data):
                i = corrupt_at - sent
                data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
            if limit is not None and sent + len(data) >= limit:
                data = data[: limit - sent]
            if stall_at is not None and not stalled and sent + len(data) >= stall_at:
                cut = stall_at - sent
                self.wfile.write(data[:cut])
                self.wfile.flush()
                rec.body_bytes_out = sent + cut
                px._stop.wait(float(p["seconds"]))
                stalled = True
                self.wfile.write(data[cut:])
            elif data:
                self.wfile.write(data)
            sent += len(data)
            rec.body_bytes_out = sent
            if limit is not None and sent >= limit:
                break
        if stall_at is not None and not stalled:
            self.wfile.flush()
            px._stop.wait(float(p["seconds"]))
        with contextlib.suppress(OSError):
            self.wfile.flush()

        if kind == "truncate":
            self.close_connection = True
        elif kind == "reset":
            self._rst()


def _iter_response(resp: http.client.HTTPResponse) -> Iterator[bytes]:
    while True:
        data = resp.read(_CHUNK)
        if not data:
            return
        yield data
