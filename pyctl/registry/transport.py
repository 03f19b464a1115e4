"""HTTP for the registry client, on urllib3: connection pools per TLS configuration (https set
up at its first use), one request at a time, answers streamed or read with a cap, what an
error answer says, and what a network failure means (from exception types, not messages).

No redirect is followed and nothing is retried here: :mod:`pyctl.registry.retry` decides
both. Proxies and netrc from the environment are not used. (Just over 500 lines: TLS setup and
the classification of failures belong to the connection they describe.)
"""

from __future__ import annotations

import enum
import http.client
import json
import os
import socket
import ssl
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

import urllib3
from urllib3 import exceptions as u3

from pyctl.errors import PyctlError, RegistryError, RegistryNotFound
from pyctl.oci import MAX_MANIFEST_SIZE
from pyctl.registry.hosts.model import RegistryHost

CHUNK = 1 << 20
READ_PIECE = 256 << 10  # socket reads while streaming a blob (see Response.stream)
MAX_ANSWER = MAX_MANIFEST_SIZE  # bodies read whole: errors, answers to HEAD/PUT/POST, /v2/
MAX_ERROR_BODY = 64000

# Connection-level failures: worth a retry, or a fall-back to plain HTTP.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    u3.TimeoutError,  # connect / read timeouts, refused connections, unknown names
    u3.SSLError,
    u3.ProtocolError,  # resets, truncated answers
    u3.IncompleteRead,
    u3.InvalidChunkLength,
    u3.PoolError,
    u3.ProxyError,
    ssl.SSLError,
    ConnectionError,
    TimeoutError,
)
# Everything else is about the request or the answer itself (an unusable URL in a challenge
# realm or a Location, a header that cannot be sent, a body that does not decode): sending it
# again will not help. Always caught after TRANSPORT_ERRORS.
HTTP_ERRORS: tuple[type[BaseException], ...] = (u3.HTTPError, http.client.HTTPException, ValueError)


def _timeout(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


CONNECT_TIMEOUT = _timeout("PYCTL_CONNECT_TIMEOUT", 30.0)
READ_TIMEOUT = _timeout("PYCTL_READ_TIMEOUT", 60.0)


# --------------------------------------------------------------------------------------------
# Requests and answers


class SentRequest:
    """What was sent: the method and the headers."""

    def __init__(self, method: str, headers: Mapping[str, str]) -> None:
        self.method = method
        self.headers = dict(headers)


class Response:
    """A streamed answer. ``close()`` hands the connection back to the pool when the body was
    read to its end, and drops it otherwise."""

    def __init__(self, raw: urllib3.BaseHTTPResponse, request: SentRequest, url: str) -> None:
        self.raw = raw
        self.request = request
        self.url = url
        self.status_code: int = raw.status
        self.reason: str = raw.reason or ""
        self.headers: urllib3.HTTPHeaderDict = raw.headers  # case-insensitive, .getlist()
        self.content: bytes | None = None  # the body, once read whole
        self.hint = ""  # what to tell the operator about a final 401
        self.attempts = 1  # sent this many times (retries of 408/429/5xx)

    def read(self, limit: int, what: str) -> bytes:
        """The whole body (Content-Encoding decoded), kept in ``content``; more than ``limit``
        bytes is an error naming ``what``. Network failures propagate as they are."""
        if self.content is not None:
            return self.content
        buf = bytearray()
        try:
            for chunk in self.raw.stream(CHUNK, decode_content=True):
                buf += chunk
                if len(buf) > limit:
                    raise RegistryError(f"{what} is larger than {limit} bytes")
        finally:
            self.close()  # the connection goes back to the pool when the body was read
        self.content = bytes(buf)
        return self.content

    def prefix(self, limit: int) -> bytes:
        """At most the first ``limit`` bytes of the body (an error message), b"" when it cannot
        be read; the rest is not read."""
        if self.content is not None:
            return self.content[:limit]
        buf = bytearray()
        try:
            for chunk in self.raw.stream(CHUNK, decode_content=True):
                buf += chunk
                if len(buf) >= limit:
                    break
        except (*TRANSPORT_ERRORS, *HTTP_ERRORS):
            pass
        finally:
            self.close()
        return bytes(buf[:limit])

    def stream(self) -> Iterator[bytes]:
        """The body in socket-sized pieces (``READ_PIECE``), each handed out as soon as it
        arrives: when the connection drops, a resume with ``Range`` loses at most one piece
        (urllib3 discards a partly filled read when the connection breaks). The destination
        gathers pieces into larger writes itself."""
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        yield from self.raw.stream(READ_PIECE, decode_content=encoding != "identity")

    def close(self) -> None:
        if not self.raw.closed:  # an answer not read to its end: the connection is unusable
            self.raw.close()
        self.raw.release_conn()

    def error(self) -> RegistryError:
        """What this error answer says: the distribution error body as ``code: message``, else
        the status; 404 is :class:`RegistryNotFound`."""
        status = self.status_code
        text = code = ""
        body = self.prefix(MAX_ERROR_BODY) if self.request.method != "HEAD" else b""
        try:
            doc = json.loads(body) if body else None
        except (ValueError, RecursionError):
            doc = None
        errors = doc.get("errors") if isinstance(doc, dict) else None
        if isinstance(errors, list) and errors:
            parts = []
            for err in errors:
                if not isinstance(err, dict):
                    continue
                c = str(err.get("code") or "UNKNOWN")
                code = code or c
                msg = str(err.get("message") or "").strip()
                parts.append(f"{c.lower().replace('_', ' ')}: {msg}" if msg else c.lower())
            text = "; ".join(parts)
        elif isinstance(doc, dict) and isinstance(doc.get("details"), str):
            text = doc["details"]
        if not text:  # no usable body (HEAD answers have none): the status says it
            text, code = _STATUS_TEXT.get(status, (f"unexpected status {status} {self.reason}", ""))
            text = text.strip()
        if status == 401 and self.hint == "denied":
            text, code = _STATUS_TEXT[403]
        elif status == 401 and self.hint:
            text = f"{text} ({self.hint})"
        if self.attempts > 1:
            text = f"{text} (gave up after {self.attempts} attempts)"
        cls = RegistryNotFound if status == 404 else RegistryError
        return cls(text, status, code)


_STATUS_TEXT = {
    401: ("unauthorized: authentication required", "UNAUTHORIZED"),
    403: ("denied: requested access to the resource is denied", "DENIED"),
    404: ("not found", "NOT_FOUND"),
    429: ("toomanyrequests: too many requests", "TOOMANYREQUESTS"),
}


class _SizedBody:
    """A streamed request body of known length: urllib3 then sends ``Content-Length``
    instead of chunked encoding (registries want the former for blob PUTs)."""

    def __init__(self, chunks: Iterable[bytes], size: int) -> None:
        self._chunks = chunks
        self._size = size

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._chunks)


def _body(data: bytes | Iterable[bytes] | None, headers: Mapping[str, str]) -> Any:
    if data is None or isinstance(data, bytes):
        return data
    if isinstance(data, list | tuple):
        return b"".join(data)
    length = headers.get("Content-Length")
    if length is None or not length.isdigit():
        raise PyctlError("internal: a streamed request body needs a Content-Length")
    return _SizedBody(data, int(length))


# --------------------------------------------------------------------------------------------
# Connection pools


class Session:
    """Connection pools for one TLS configuration: plain HTTP at once, https at the first https
    request (its TLS context, with the system CA store, costs some 30 ms that a plain-HTTP
    registry then never pays)."""

    def __init__(self, make_context: Callable[[], ssl.SSLContext], verify: bool, pool: int) -> None:
        self._make_context = make_context
        self._verify = verify
        self._pool = pool
        self._http = urllib3.PoolManager(num_pools=pool, maxsize=pool, retries=False)
        self._https: urllib3.PoolManager | None = None
        self._lock = threading.Lock()

    def _manager(self, url: str) -> urllib3.PoolManager:
        if not url.startswith("https://"):
            return self._http
        with self._lock:
            if self._https is None:
                self._https = urllib3.PoolManager(
                    num_pools=self._pool,
                    maxsize=self._pool,
                    retries=False,
                    ssl_context=self._make_context(),
                    cert_reqs="CERT_REQUIRED" if self._verify else "CERT_NONE",
                )
            return self._https

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        timeout: tuple[float, float],
        body: bytes | Iterable[bytes] | None = None,
    ) -> Response:
        """Send one request (no redirects followed, no retries) and return the streamed answer.
        A streamed ``body`` needs a ``Content-Length`` header."""
        raw = self._manager(url).urlopen(
            method,
            url,
            body=_body(body, headers),
            headers=dict(headers),
            redirect=False,
            retries=False,
            preload_content=False,
            timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]),
        )
        return Response(raw, SentRequest(method, headers), url)

    def close(self) -> None:
        self._http.clear()
        with self._lock:
            if self._https is not None:
                self._https.clear()


class Sessions:
    """The pools of one run, one :class:`Session` per TLS configuration (CA files, client
    certificates, verification)."""

    def __init__(self, *, insecure: bool, pool: int) -> None:
        self.insecure = insecure
        self.pool = pool
        self._sessions: dict[tuple[Any, ...], Session] = {}
        self._lock = threading.Lock()

    def for_host(self, host: RegistryHost) -> Session:
        key = (host.ca, host.client, host.skip_verify, self.insecure)
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                verify = not (self.insecure or bool(host.skip_verify))
                if not verify:
                    # Chosen by the operator (skip_verify / --insecure-registry); `hosts`
                    # shows it. urllib3 would warn on stderr for every request otherwise.
                    warnings.simplefilter("ignore", u3.InsecureRequestWarning)
                session = Session(lambda: ssl_context(host, self.insecure), verify, self.pool)
                self._sessions[key] = session
        return session

    def close(self) -> None:
        with self._lock:
            for s in self._sessions.values():
                s.close()


def ssl_context(host: RegistryHost, insecure: bool) -> ssl.SSLContext:
    """The TLS settings of ``host``'s configuration: its CAs on top of the system's, its
    client certificates, verification unless skip_verify / ``--insecure-registry``. Built of
    the three pieces below, which ``hosts --check`` also uses one at a time."""
    ctx = base_context(verify=not (insecure or bool(host.skip_verify)))
    load_cas(ctx, host)
    load_client_certs(ctx, host)
    return ctx


def base_context(*, verify: bool) -> ssl.SSLContext:
    """A client context with the system CA store that verifies the server's certificate and
    name, or one that verifies nothing (``verify=False``)."""
    if verify:
        return ssl.create_default_context()
    # Nothing is verified: no need to load the system CA store (some 30 ms). Loopback
    # registries without configuration are tried like this before plain HTTP.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    keylog = os.environ.get("SSLKEYLOGFILE")  # as create_default_context does
    if keylog and not sys.flags.ignore_environment:
        ctx.keylog_filename = keylog
    return ctx


def load_cas(ctx: ssl.SSLContext, host: RegistryHost) -> None:
    """Trust ``host``'s CA files (``ca``, certs.d ``*.crt``) besides the system's."""
    for ca in host.ca:
        try:
            ctx.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as exc:
            raise PyctlError(
                f"cannot load CA file {ca} (from {host.source}): {exc.strerror or exc}"
            ) from None


def load_client_certs(ctx: ssl.SSLContext, host: RegistryHost) -> None:
    """Offer ``host``'s client certificates (``client``, certs.d ``*.cert``/``*.key``)."""
    for cert, key in host.client:
        try:
            ctx.load_cert_chain(cert, key or None)
        except (OSError, ssl.SSLError) as exc:
            raise PyctlError(
                f"cannot load client certificate {cert}"
                f"{' / ' + key if key else ''} (from {host.source}): {exc.strerror or exc}"
            ) from None


def with_scheme(url: str, scheme: str) -> str:
    return urlunsplit((scheme, *urlsplit(url)[1:]))


# --------------------------------------------------------------------------------------------
# What a network failure means


class Failure(enum.Enum):
    UNVERIFIED = "the server's certificate does not verify"
    CLIENT_CERT = "the server refused or wants a client certificate (a TLS alert, or EOF)"
    NOT_TLS = "the server does not speak TLS"
    TLS = "another TLS failure"
    TIMEOUT = "no answer in time"
    REFUSED = "connection refused"
    UNRESOLVED = "the name does not resolve"
    OTHER = "another network failure"


class NetworkFailure(NamedTuple):
    kind: Failure
    detail: str = ""  # what exactly: the certificate problem, the TLS alert


# OpenSSL X509_V_ERR_* codes (ssl.SSLCertVerificationError.verify_code) as Go's x509 says them
_VERIFY_DETAIL = {
    2: "unable to get local issuer certificate",
    9: "certificate is not yet valid",
    10: "certificate has expired",
    18: "self-signed certificate",
    19: "self-signed certificate",
    20: "unable to get local issuer certificate",
    21: "unable to get local issuer certificate",
    62: "hostname mismatch",
    64: "ip address mismatch",
}
# OpenSSL reasons of a TLS handshake with something that is not TLS (plain HTTP)
_NOT_TLS = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "UNKNOWN_PROTOCOL", "HTTP_REQUEST"}
)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps (urllib3 keeps the socket or ssl error as a cause or an
    argument), each once."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [c for c in (e.__cause__, e.__context__) if c is not None]
        todo += [a for a in e.args if isinstance(a, BaseException)]


def classify(exc: BaseException) -> NetworkFailure:
    """What a failure to talk to a host was, from the types urllib3, ssl and socket raise."""
    causes = list(_causes(exc))
    for e in causes:
        if isinstance(e, ssl.SSLCertVerificationError):
            return NetworkFailure(
                Failure.UNVERIFIED, _VERIFY_DETAIL.get(e.verify_code, "certificate verify failed")
            )
    for e in causes:
        if isinstance(e, TimeoutError | u3.ConnectTimeoutError | u3.ReadTimeoutError) and not (
            isinstance(e, u3.NewConnectionError)
        ):
            return NetworkFailure(Failure.TIMEOUT)
    for e in causes:
        if isinstance(e, ssl.SSLEOFError | ssl.SSLZeroReturnError):
            return NetworkFailure(Failure.CLIENT_CERT, "it closed the connection")
        if isinstance(e, ssl.SSLError):
            reason = str(e.reason or "")
            if reason in _NOT_TLS:
                return NetworkFailure(Failure.NOT_TLS)
            if "_ALERT_" in reason:
                alert = reason.split("_ALERT_", 1)[1].lower().replace("_", " ")
                return NetworkFailure(Failure.CLIENT_CERT, f"alert: {alert}")
    if any(isinstance(e, ssl.SSLError | u3.SSLError) for e in causes):
        return NetworkFailure(Failure.TLS)
    if any(isinstance(e, ConnectionRefusedError) for e in causes):
        return NetworkFailure(Failure.REFUSED)
    if any(isinstance(e, u3.NameResolutionError | socket.gaierror) for e in causes):
        return NetworkFailure(Failure.UNRESOLVED)
    return NetworkFailure(Failure.OTHER)


def describe(
    exc: BaseException,
    url: str,
    client_certs: Sequence[tuple[str, str]] = (),
    *,
    tls_fix: str | None = None,
) -> str:
    """A one-line reason for a failure to talk to ``url``'s host; ``client_certs`` are the
    client certificates offered to it (a TLS alert then means the registry refused them),
    ``tls_fix`` is what to do when its certificate does not verify (it names the
    configuration that applied)."""
    host = urlsplit(url).netloc
    failure = classify(exc)
    kind, detail = failure.kind, failure.detail
    if kind is Failure.UNVERIFIED:
        hint = tls_fix or (
            "add the registry's CA to its hosts.toml (ca = ...) or certs.d directory, "
            "or use --insecure-registry"
        )
        if "expired" in detail or "not yet valid" in detail:
            hint = "the registry's certificate is outside its validity period"
        elif "mismatch" in detail:
            hint = "the certificate does not name this host"
        return f"x509: {detail} for {host} ({hint})"
    if kind is Failure.CLIENT_CERT and client_certs:
        return (
            f"TLS handshake with {host} failed: the registry refused the client certificate "
            f"{client_certs[0][0]} ({detail}; is it signed by a CA the registry trusts, "
            "and still valid?)"
        )
    if kind is Failure.CLIENT_CERT and "certificate" in detail:
        return (
            f"TLS handshake with {host} failed: the registry requires a client certificate "
            "(set client = ... in its hosts.toml or put NAME.cert/NAME.key in its certs.d "
            "directory)"
        )
    if kind is Failure.NOT_TLS:
        return f"{host} does not speak TLS (plain HTTP registry? use --insecure-registry)"
    if kind in (Failure.TLS, Failure.CLIENT_CERT):
        return f"TLS error talking to {host}: {short(str(exc))}"
    if kind is Failure.TIMEOUT:
        return f"timeout talking to {host}"
    if kind is Failure.REFUSED:
        return f"connection refused by {host}"
    if kind is Failure.UNRESOLVED:
        return f"cannot resolve host {urlsplit(url).hostname or host}"
    return f"cannot talk to {host}: {short(str(exc))}"


def short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:200] + "…"


# --------------------------------------------------------------------------------------------
# Debug logs

REDACTED = "<redacted>"
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization"})
_OPAQUE_SECRET_HEADERS = frozenset({"cookie", "set-cookie", "x-registry-auth"})


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``headers`` safe to log: ``Authorization``/``Proxy-Authorization`` keep only
    their scheme (``Bearer <redacted>``); cookies are replaced entirely."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        lname = name.lower()
        if lname in _SECRET_HEADERS:
            scheme, sep, _ = str(value).strip().partition(" ")
            out[name] = f"{scheme} {REDACTED}" if sep and scheme else REDACTED
        elif lname in _OPAQUE_SECRET_HEADERS:
            out[name] = REDACTED
        else:
            out[name] = value
    return out
