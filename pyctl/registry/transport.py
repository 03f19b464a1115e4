"""HTTP plumbing for the registry client, on urllib3: pooled connections per TLS configuration
(https set up at its first use), streamed answers, and which errors are the network's.

No redirects are followed and nothing is retried here: the client decides both (credentials
never follow a redirect to another host; retries honour Retry-After). Proxies and netrc from
the environment are not used.
"""

from __future__ import annotations

import base64
import http.client
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from urllib.parse import urlencode

import urllib3
from urllib3 import exceptions as u3

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


def is_tls_error(exc: BaseException) -> bool:
    return isinstance(exc, u3.SSLError | ssl.SSLError)


def is_timeout(exc: BaseException) -> bool:
    """A timeout proper (urllib3 files refused connections and unknown names under its
    TimeoutError too)."""
    if isinstance(exc, u3.NewConnectionError):
        return "timed out" in str(exc).lower()
    return isinstance(exc, u3.TimeoutError | TimeoutError)


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
        self.content: bytes | None = None  # the body, once something read it whole
        self.hint = ""  # what to tell the operator about a final 401
        self.attempts = 1  # sent this many times (retries of 408/429/5xx)

    def iter_content(self, size: int) -> Iterator[bytes]:
        """The body (Content-Encoding decoded) in pieces of at most ``size`` bytes."""
        yield from self.raw.stream(size, decode_content=True)

    def close(self) -> None:
        if not self.raw.closed:  # an answer not read to its end: the connection is unusable
            self.raw.close()
        self.raw.release_conn()


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
        form: Mapping[str, str] | None = None,
        basic: tuple[str, str] | None = None,
    ) -> Response:
        """Send one request (no redirects followed, no retries) and return the streamed answer.
        ``form`` is sent urlencoded; ``basic`` is a username and password for Basic auth."""
        sent = dict(headers)
        if form is not None:
            body = urlencode(form).encode()
            sent.setdefault("Content-Type", "application/x-www-form-urlencoded")
        if basic is not None:
            token = base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode("ascii")
            sent["Authorization"] = f"Basic {token}"
        raw = self._manager(url).urlopen(
            method,
            url,
            body=body,
            headers=sent,
            redirect=False,
            retries=False,
            preload_content=False,
            timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]),
        )
        return Response(raw, SentRequest(method, sent), url)

    def close(self) -> None:
        self._http.clear()
        with self._lock:
            if self._https is not None:
                self._https.clear()
