"""The one retry and redirect policy: every registry request, token requests included, goes
through :meth:`Sender.send`, and this is where retries are decided.

* A transport failure (no answer) is retried with backoff on the last endpoint of a registry
  (and on the push endpoint of a push); a mirror that fails gives way to the next endpoint at
  once, as in containerd. TLS and name-resolution failures are never retried: they do not go
  away in a second.
* 408, 429 and 5xx answers are retried with backoff, honouring ``Retry-After``.
* An https endpoint that turns out not to speak TLS (or refuses the connection) is used over
  plain HTTP where its configuration allows it (``http_fallback``, ``--insecure-registry``).
* Redirects are followed (up to 10); headers from hosts.toml and credentials go only to the
  endpoint's own host, never to the host a redirect leads to.
* A 401 goes back to the request's auth flow (:mod:`pyctl.registry.auth`), which may set up
  authentication and have the request sent again.

A blob read that breaks after its answer started is resumed with ``Range`` by the
distribution layer (:meth:`pyctl.registry.distribution.Repository.open_blob`), not here.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import Protocol
from urllib.parse import urljoin, urlsplit, urlunsplit

from pyctl.errors import RegistryError, RegistryUnreachable
from pyctl.registry.hosts.model import RegistryHost
from pyctl.registry.hosts.provenance import Provenance
from pyctl.registry.transport import (
    CONNECT_TIMEOUT,
    HTTP_ERRORS,
    MAX_ANSWER,
    READ_TIMEOUT,
    TRANSPORT_ERRORS,
    Failure,
    Response,
    Sessions,
    classify,
    describe,
    redact_headers,
    short,
    with_scheme,
)

USER_AGENT = "pyctl/0.1"
MAX_ATTEMPTS = 5
MAX_REDIRECTS = 10
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 30.0
REDIRECTS = frozenset({301, 302, 303, 307, 308})


def backoff(attempt: int) -> float:
    """Seconds to wait before attempt ``attempt + 1``: exponential, jittered, at most 4 s."""
    base: float = min(0.1 * (2**attempt), 4.0)
    return base * (0.5 + random.random() / 2)


def retry_after(resp: Response, attempt: int) -> float:
    value = resp.headers.get("Retry-After")
    if value:
        try:
            seconds = float(value)
            if math.isfinite(seconds):
                return min(max(seconds, 0.0), MAX_RETRY_AFTER)
        except ValueError:
            try:
                when = parsedate_to_datetime(value).timestamp()
                return min(max(when - time.time(), 0.0), MAX_RETRY_AFTER)
            except (TypeError, ValueError):
                pass
    return backoff(attempt)


class AuthFlow(Protocol):
    """How one request authenticates (:class:`pyctl.registry.auth.RequestAuth`)."""

    def authorization(self, url: str) -> str | None:
        """The ``Authorization`` header for ``url`` (the endpoint's own host), if any."""
        ...

    def unauthorized(self, resp: Response) -> bool:
        """A 401 came back: True when sending the request again can help."""
        ...

    def hint(self, resp: Response) -> str:
        """What to tell the operator about a final 401."""
        ...


Body = Callable[[], bytes | Iterable[bytes]]


class Sender:
    """Sends the requests of one run to the endpoints ``hosts`` of one registry, over
    ``sessions`` (the connection pools; tests pass a fake). ``timeout`` (seconds) replaces the
    connect and read timeouts (``PYCTL_CONNECT_TIMEOUT``/``PYCTL_READ_TIMEOUT``, a
    ``dial_timeout``), and ``retry=False`` sends each request once: ``hosts --check`` asks
    what an endpoint answers, within its time."""

    def __init__(
        self,
        hosts: Sequence[RegistryHost],
        provenance: Provenance,
        *,
        push: bool = False,
        insecure: bool = False,
        debug: bool = False,
        pool: int = 8,
        sessions: Sessions | None = None,
        timeout: float | None = None,
        retry: bool = True,
    ) -> None:
        self.hosts = list(hosts)
        self.provenance = provenance
        self.push = push
        self.insecure = insecure
        self.debug = debug
        self.timeout = timeout
        self.retry = retry
        self.sessions = Sessions(insecure=insecure, pool=pool) if sessions is None else sessions
        self._plain_http: set[str] = set()  # hosts that fell back from https to http

    def close(self) -> None:
        self.sessions.close()

    def log(self, text: str) -> None:
        if self.debug:
            sys.stderr.write(f"debug: {text}\n")  # one write: threads' lines do not interleave
            sys.stderr.flush()

    def effective(self, url: str) -> str:
        """``url`` over plain HTTP when its host fell back to it."""
        if url.startswith("https://") and urlsplit(url).netloc in self._plain_http:
            return with_scheme(url, "http")
        return url

    def send(
        self,
        method: str,
        host: RegistryHost,
        url: str,
        *,
        auth: AuthFlow | None = None,
        headers: Mapping[str, str] | None = None,
        body: Body | None = None,
        stream: bool = False,
        retry: bool = True,
        limit: int = MAX_ANSWER,
        peer: str = "",
    ) -> Response:
        """One logical request to ``url`` (on endpoint ``host``, whose TLS settings and
        headers apply). ``stream``: the body is left to the caller; otherwise it is read whole
        (at most ``limit`` bytes), inside the retries. ``peer`` names what ``url`` is when it
        is not the endpoint (``token server``) in failures."""
        attempts = 0
        url = self.effective(url)
        retry = retry and self.retry
        while True:
            attempts += 1
            try:
                resp = self._follow(
                    method, host, url, headers or {}, body, stream, auth, limit, peer
                )
            except TRANSPORT_ERRORS as exc:
                failure = classify(exc).kind
                if not peer and self._fallback(host, url, failure):
                    url = with_scheme(url, "http")
                    attempts -= 1
                    continue
                if retry and attempts < MAX_ATTEMPTS and self._may_retry(host, failure):
                    delay = backoff(attempts)
                    self.log(f"retrying {method} {url} in {delay:.2f}s after: {exc}")
                    time.sleep(delay)
                    continue
                raise RegistryUnreachable(
                    self._unreachable(exc, host, url, attempts, peer)
                ) from None
            except HTTP_ERRORS as exc:
                what = f"{peer} {_without_query(url)}" if peer else f"{method} {url}"
                raise RegistryError(f"{what}: {short(str(exc))}") from None
            status = resp.status_code
            if status == 401 and auth is not None:
                if auth.unauthorized(resp):
                    resp.close()
                    attempts -= 1
                    continue
                resp.hint = auth.hint(resp)
            if retry and status in RETRY_STATUSES and attempts < MAX_ATTEMPTS:
                delay = retry_after(resp, attempts)
                self.log(f"retrying {method} {url} in {delay:.2f}s after HTTP {status}")
                resp.close()
                time.sleep(delay)
                continue
            if attempts > 1 and status in RETRY_STATUSES:
                resp.attempts = attempts
            return resp

    def _follow(
        self,
        method: str,
        host: RegistryHost,
        url: str,
        extra: Mapping[str, str],
        body: Body | None,
        stream: bool,
        auth: AuthFlow | None,
        limit: int,
        peer: str,
    ) -> Response:
        """Send, following redirects; credentials and hosts.toml headers only to ``url``'s
        own host."""
        session = self.sessions.for_host(host)
        origin = urlsplit(url).netloc
        current = url
        for _hop in range(MAX_REDIRECTS + 1):
            own = urlsplit(current).netloc == origin
            headers = {"User-Agent": USER_AGENT}
            if own:
                headers.update((k, ", ".join(vs)) for k, vs in host.headers.items())
            headers.update((k, v) for k, v in extra.items() if own or k.lower() != "authorization")
            authorization = auth.authorization(current) if auth is not None and own else None
            if authorization:
                headers["Authorization"] = authorization
            if self.debug:
                self.log(f"http {method} {current} {json.dumps(redact_headers(headers))}")
            resp = session.request(
                method,
                current,
                headers=headers,
                body=body() if body is not None else None,
                timeout=self._timeouts(host),
            )
            self.log(f"http {method} {current} -> {resp.status_code}")
            redirect = resp.status_code in REDIRECTS and "Location" in resp.headers
            if redirect or not stream:
                # Bodies that are read whole are read with a cap: an endless answer must
                # neither hang nor fill the memory.
                what = f"{peer} answer" if peer else f"{method} {current}: the answer"
                resp.read(limit, what)
            if not redirect:
                return resp
            current = urljoin(current, resp.headers["Location"])
            if resp.status_code == 303 or (resp.status_code in (301, 302) and method == "POST"):
                method = "GET" if method != "HEAD" else "HEAD"
                body = None
        raise RegistryError(f"{method} {url}: stopped after {MAX_REDIRECTS} redirects")

    def _timeouts(self, host: RegistryHost) -> tuple[float, float]:
        if self.timeout is not None:
            return min(host.dial_timeout or self.timeout, self.timeout), self.timeout
        return host.dial_timeout or CONNECT_TIMEOUT, READ_TIMEOUT

    def _fallback(self, host: RegistryHost, url: str, failure: Failure) -> bool:
        """Plain HTTP for an https endpoint that does not speak TLS (or refuses https), where
        its configuration allows it."""
        if not url.startswith("https://") or not (host.http_fallback or self.insecure):
            return False
        if failure not in (Failure.NOT_TLS, Failure.REFUSED):
            return False
        netloc = urlsplit(url).netloc
        self._plain_http.add(netloc)
        self.log(f"{netloc}: no TLS there, using plain HTTP")
        return True

    def _may_retry(self, host: RegistryHost, failure: Failure) -> bool:
        if failure in (Failure.UNVERIFIED, Failure.CLIENT_CERT, Failure.NOT_TLS, Failure.TLS):
            return False
        if failure is Failure.UNRESOLVED:
            return False
        last = self.hosts[-1] if self.hosts else host
        return host == last or (self.push and host.has("push"))

    def _unreachable(
        self, exc: BaseException, host: RegistryHost, url: str, attempts: int, peer: str
    ) -> str:
        if peer:
            return f"{peer}: {describe(exc, url)}"
        fix = self.provenance.tls_fix(host)
        reason = describe(exc, url, host.client, tls_fix=fix)
        if fix not in reason:  # the fix names the configuration
            reason += f" ({self.provenance.where(host)})"
        if attempts > 1:
            reason += f" (gave up after {attempts} attempts)"
        return reason


def _without_query(url: str) -> str:
    return urlunsplit((*urlsplit(url)[:3], "", ""))
