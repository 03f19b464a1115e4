"""OCI distribution over HTTP: endpoints from hosts.toml, TLS per host, challenge-driven auth,
retries, redirects without credentials, resumable blob downloads, uploads.

One :class:`Registry` serves one repository of one registry host for one command run; it keeps
a pooled HTTP session per TLS configuration, the auth handler per host and the bearer tokens
per scope set.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import re
import ssl
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

from pyctl.errors import NotFoundError, PyctlError
from pyctl.oci import (
    MAX_MANIFEST_SIZE,
    Descriptor,
    digest_problem,
    is_index,
    is_manifest,
    sha256_digest,
)
from pyctl.registry.auth import (
    Challenge,
    Credential,
    Token,
    merge_scopes,
    parse_token_response,
    parse_www_authenticate,
    redact_headers,
)
from pyctl.registry.hosts.model import RegistryHost, registry_endpoint_hosts
from pyctl.registry.hosts.provenance import HostsLookup, endpoint_from, tls_fix
from pyctl.registry.transport import (
    HTTP_ERRORS,
    TRANSPORT_ERRORS,
    Response,
    Session,
    is_timeout,
    is_tls_error,
)

MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "*/*",
    ]
)
USER_AGENT = "pyctl/0.1"
CHUNK = 1 << 20
READ_PIECE = 256 << 10  # socket reads while streaming a blob (see _iter_body)
MAX_ATTEMPTS = 5
MAX_REDIRECTS = 10
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 30.0
MAX_ANSWER = MAX_MANIFEST_SIZE  # bodies read whole: errors, answers to HEAD/PUT/POST, /v2/
MAX_TOKEN_ANSWER = 1 << 20


def _timeout(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


CONNECT_TIMEOUT = _timeout("PYCTL_CONNECT_TIMEOUT", 30.0)
READ_TIMEOUT = _timeout("PYCTL_READ_TIMEOUT", 60.0)

class RegistryError(PyctlError):
    """The registry answered with an error (or could not be reached)."""

    def __init__(self, message: str, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class RegistryNotFound(RegistryError, NotFoundError):
    pass


class TransportError(RegistryError):
    pass


def decode_error(resp: Response) -> RegistryError:
    """The distribution error body as `code: message`, else the status line."""
    status = resp.status_code
    text = ""
    code = ""
    try:
        body = _body_prefix(resp, 64000) if resp.request.method != "HEAD" else b""
    except (*TRANSPORT_ERRORS, *HTTP_ERRORS):
        body = b""
    if body:
        try:
            doc = json.loads(body)
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
    if not text:
        # No usable body (HEAD answers have none): the status says it.
        reason = resp.reason or ""
        default = {
            401: "unauthorized: authentication required",
            403: "denied: requested access to the resource is denied",
            404: "not found",
            429: "toomanyrequests: too many requests",
        }.get(status)
        text = default or f"unexpected status {status} {reason}".strip()
        code = {401: "UNAUTHORIZED", 403: "DENIED", 404: "NOT_FOUND", 429: "TOOMANYREQUESTS"}.get(
            status, ""
        )
    hint = resp.hint
    if status == 401 and hint == "denied":
        text, code = "denied: requested access to the resource is denied", "DENIED"
    elif status == 401 and hint:
        text = f"{text} ({hint})"
    attempts = resp.attempts
    if attempts > 1:
        text = f"{text} (gave up after {attempts} attempts)"
    cls = RegistryNotFound if status == 404 else RegistryError
    return cls(text, status, code)


def describe_transport_error(
    exc: BaseException,
    url: str,
    client_certs: Sequence[tuple[str, str]] = (),
    *,
    tls_fix: str | None = None,
    where: str | None = None,
) -> str:
    """A one-line reason for a connection-level failure; ``client_certs`` are the client
    certificates offered to that host (a TLS alert then means the registry refused them).
    ``tls_fix`` is what to do when the server's certificate does not verify (it names the
    configuration that applied); ``where`` (the endpoint and its configuration) is added to
    the other failures."""
    text = _describe_transport_error(exc, url, client_certs, tls_fix)
    if where and not (tls_fix and tls_fix in text):  # the fix names the configuration
        text += f" ({where})"
    return text


def _describe_transport_error(
    exc: BaseException, url: str, client_certs: Sequence[tuple[str, str]], tls_fix: str | None
) -> str:
    text = str(exc)
    low = text.lower()
    host = urlsplit(url).netloc
    if is_tls_error(exc) or "ssl" in low or "certificate" in low:
        if "certificate verify failed" in low:
            detail = "certificate verify failed"
            for marker in (
                "unable to get local issuer certificate",
                "self-signed certificate",
                "self signed certificate",
                "certificate has expired",
                "hostname mismatch",
                "ip address mismatch",
                "certificate is not yet valid",
            ):
                if marker in low:
                    detail = marker
                    break
            hint = tls_fix or (
                "add the registry's CA to its hosts.toml (ca = ...) or certs.d directory, "
                "or use --insecure-registry"
            )
            if "expired" in detail or "not yet valid" in detail:
                hint = "the registry's certificate is outside its validity period"
            elif "mismatch" in detail:
                hint = "the certificate does not name this host"
            return f"x509: {detail} for {host} ({hint})"
        alert = re.search(r"alert ([a-z ]+?)(?: \(|'|$)", low)
        if client_certs and (alert or "eof occurred" in low):
            reason = f"alert: {alert.group(1)}" if alert else "it closed the connection"
            return (
                f"TLS handshake with {host} failed: the registry refused the client certificate "
                f"{client_certs[0][0]} ({reason}; is it signed by a CA the registry trusts, "
                "and still valid?)"
            )
        if "certificate required" in low or ("alert" in low and "certificate" in low):
            return (
                f"TLS handshake with {host} failed: the registry requires a client certificate "
                "(set client = ... in its hosts.toml or put NAME.cert/NAME.key in its certs.d "
                "directory)"
            )
        if "wrong version number" in low or "record layer" in low or "unknown protocol" in low:
            return f"{host} does not speak TLS (plain HTTP registry? use --insecure-registry)"
        return f"TLS error talking to {host}: {_short(text)}"
    if is_timeout(exc) or "timed out" in low:
        return f"timeout talking to {host}"
    if "refused" in low:
        return f"connection refused by {host}"
    if "name or service not known" in low or "nodename nor servname" in low or "resolve" in low:
        return f"cannot resolve host {host.split(':')[0]}"
    return f"cannot talk to {host}: {_short(text)}"


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:200] + "…"


def _retry_after(resp: Response, attempt: int) -> float:
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
    return _backoff(attempt)


def _backoff(attempt: int) -> float:
    base: float = min(0.1 * (2**attempt), 4.0)
    return base * (0.5 + random.random() / 2)


def _ssl_context(host: RegistryHost, insecure: bool) -> ssl.SSLContext:
    skip_verify = insecure or bool(host.skip_verify)
    if skip_verify:
        # Nothing is verified: no need to load the system CA store (some 30 ms). Loopback
        # registries without configuration are tried like this before plain HTTP.
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        keylog = os.environ.get("SSLKEYLOGFILE")  # as create_default_context does
        if keylog and not sys.flags.ignore_environment:
            ctx.keylog_filename = keylog
    else:
        ctx = ssl.create_default_context()
    for ca in host.ca:
        try:
            ctx.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as exc:
            raise PyctlError(
                f"cannot load CA file {ca} (from {host.source}): {exc.strerror or exc}"
            ) from None
    for cert, key in host.client:
        try:
            ctx.load_cert_chain(cert, key or None)
        except (OSError, ssl.SSLError) as exc:
            raise PyctlError(
                f"cannot load client certificate {cert}"
                f"{' / ' + key if key else ''} (from {host.source}): {exc.strerror or exc}"
            ) from None
    return ctx


@dataclass
class _AuthState:
    challenge: Challenge | None = None  # bearer or basic, from the latest 401


class Registry:
    """Access to one repository (``repository``, e.g. ``library/ubuntu``) of registry
    ``ref_host`` through the endpoints ``hosts`` (already resolved from hosts.toml)."""

    def __init__(
        self,
        ref_host: str,
        repository: str,
        hosts: Sequence[RegistryHost],
        credentials: Callable[[str], Credential | None],
        *,
        push: bool = False,
        insecure: bool = False,
        debug: bool = False,
        pool: int = 8,
        hosts_dirs: Sequence[str] | None = None,
    ) -> None:
        self.ref_host = ref_host
        self.hosts_dirs = hosts_dirs  # where ``hosts`` came from (named in errors)
        self._hosts_lookup: HostsLookup | None = None
        self.repository = repository
        self.hosts = list(hosts)
        self.credentials = credentials
        self.push = push
        self.insecure = insecure
        self.debug = debug
        self.pool = pool
        self._sessions: dict[tuple[Any, ...], Session] = {}
        self._auth: dict[str, _AuthState] = {}
        self._creds: dict[str, Credential | None] = {}
        self._tokens: dict[tuple[str, tuple[str, ...]], tuple[str, float | None]] = {}
        self._plain_http: set[str] = set()  # hosts that fell back from https to http
        self._lock = threading.Lock()
        self._token_lock = threading.Lock()
        self.extra_scopes: tuple[str, ...] = ()

    # plumbing ---------------------------------------------------------------------------------

    def _session(self, host: RegistryHost) -> Session:
        key = (host.ca, host.client, host.skip_verify, self.insecure)
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                verify = not (self.insecure or bool(host.skip_verify))
                if not verify:
                    # Chosen by the operator (skip_verify / --insecure-registry); `hosts`
                    # shows it. urllib3 would warn on stderr for every request otherwise.
                    from urllib3.exceptions import InsecureRequestWarning

                    warnings.simplefilter("ignore", InsecureRequestWarning)
                session = Session(lambda: _ssl_context(host, self.insecure), verify, self.pool)
                self._sessions[key] = session
        return session

    def close(self) -> None:
        for s in self._sessions.values():
            s.close()

    def _log(self, text: str) -> None:
        if self.debug:
            print(f"debug: {text}", file=sys.stderr, flush=True)

    def _scopes(self) -> tuple[str, ...]:
        if not self.repository:
            return merge_scopes(self.extra_scopes)
        actions = "pull,push" if self.push else "pull"
        return merge_scopes([f"repository:{self.repository}:{actions}"], self.extra_scopes)

    def _credential(self, netloc: str) -> Credential | None:
        """Credentials for requests to ``netloc``. The registry's own hosts (its host, its
        hosts.toml ``server``'s, whatever entry names them) use the image registry's
        credentials; a mirror only ever gets credentials stored for the mirror itself."""
        if netloc not in self._creds:
            cred = None
            if netloc in registry_endpoint_hosts(self.ref_host, self.hosts):
                cred = self.credentials(self.ref_host)
            if cred is None and netloc != self.ref_host:
                cred = self.credentials(netloc)
            self._creds[netloc] = cred
        return self._creds[netloc]

    def url(self, host: RegistryHost, *parts: str, query: Mapping[str, str] | None = None) -> str:
        base = host.url(self.repository, *parts)
        params = dict(query or {})
        if host.needs_ns(self.ref_host):
            params["ns"] = self.ref_host
        if params:
            base += ("&" if "?" in base else "?") + urlencode(sorted(params.items()))
        scheme = host.scheme
        netloc = host.host
        if scheme == "https" and netloc in self._plain_http:
            parts_ = urlsplit(base)
            base = urlunsplit(("http", *parts_[1:]))
        return base

    # auth -------------------------------------------------------------------------------------

    def _authorization(self, url: str, host: RegistryHost) -> str | None:
        netloc = urlsplit(url).netloc
        state = self._auth.get(netloc)
        if state is None or state.challenge is None:
            return None
        ch = state.challenge
        if ch.scheme == "basic":
            cred = self._credential(netloc)
            if cred is None or cred.identity_token:
                return None
            # Plain HTTP only where the operator allowed it: --insecure-registry, an
            # http:// host entry, or the HTTPS-then-HTTP fallback (http:// entries with TLS
            # settings, and loopback registries, which docker treats as insecure too).
            plain_ok = self.insecure or host.scheme == "http" or host.http_fallback
            if url.startswith("http://") and not plain_ok:
                raise RegistryError(
                    f"refusing to send credentials to {netloc} over plain HTTP "
                    "(use --insecure-registry, or an http:// host in its hosts.toml)"
                )
            import base64

            raw = f"{cred.username}:{cred.secret}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        if ch.scheme == "bearer":
            return "Bearer " + self._token(netloc, host, ch)
        return None

    def _token(self, netloc: str, host: RegistryHost, ch: Challenge) -> str:
        scopes = merge_scopes(self._scopes(), ch.scope.split() if ch.scope else ())
        key = (ch.realm or "", scopes)
        with self._token_lock:  # one fetch per scope set, however many threads need it
            with self._lock:
                cached = self._tokens.get(key)
            if cached is not None and (cached[1] is None or cached[1] > time.time() + 5):
                return cached[0]
            token = self._fetch_token(netloc, host, ch, scopes)
            with self._lock:
                self._tokens[key] = (token.token, token.expires_at)
            return token.token

    def _fetch_token(
        self, netloc: str, host: RegistryHost, ch: Challenge, scopes: Sequence[str]
    ) -> Token:
        realm = ch.realm
        if not _usable_url(realm):
            raise RegistryError(
                f"registry {netloc} sent a bearer challenge without a usable realm "
                f"({_short(repr(realm))})"
            )
        assert realm is not None
        cred = self._credential(netloc)
        session = self._session(host)
        headers = {"User-Agent": USER_AGENT}
        for k, vs in host.headers.items():
            headers[k] = ", ".join(vs)
        service = ch.service
        if cred is not None and cred.secret:
            form: dict[str, str] = {"client_id": "pyctl"}
            if cred.identity_token or not cred.username:
                form.update(grant_type="refresh_token", refresh_token=cred.secret)
            else:
                form.update(grant_type="password", username=cred.username, password=cred.secret)
            if scopes:
                form["scope"] = " ".join(scopes)
            if service:
                form["service"] = service
            grant = form["grant_type"]
            self._log(f"http POST {realm} (oauth2 token, {grant} grant) scopes={' '.join(scopes)}")
            resp = _token_request(session, "POST", realm, realm, headers, form=form)
            if resp.status_code == 200:
                return parse_token_response(_read_token(resp), time.time())
            fallback = resp.status_code in (400, 401, 404) or (
                resp.status_code == 405 and bool(cred.username)
            )
            if not fallback:
                raise self._token_error(resp, netloc)
            resp.close()
        # GET with Basic (or anonymous).
        params: list[tuple[str, str]] = []
        if service:
            params.append(("service", service))
        params.extend(("scope", s) for s in scopes)
        auth = None
        if cred is not None and cred.secret and cred.username and not cred.identity_token:
            auth = (cred.username, cred.secret)
        sep = "&" if "?" in realm else "?"
        url = realm + (sep + urlencode(params) if params else "")
        self._log(f"http GET {url} (token{' with credentials' if auth else ', anonymous'})")
        resp = _token_request(session, "GET", url, realm, headers, basic=auth)
        if resp.status_code != 200:
            raise self._token_error(resp, netloc)
        return parse_token_response(_read_token(resp), time.time())

    def _token_error(self, resp: Response, netloc: str) -> RegistryError:
        err = decode_error(resp)
        if resp.status_code == 401:
            return RegistryError(
                f"unauthorized: authentication required for {self.ref_host} "
                f"(the token server refused the credentials; run pyctl login {self.ref_host})",
                401,
                "UNAUTHORIZED",
            )
        return RegistryError(f"token server: {err}", err.status, err.code)

    def _handle_401(self, resp: Response, netloc: str, sent_auth: bool) -> bool:
        """Set up auth for ``netloc`` from a 401; False if retrying cannot help.

        A 401 to a request sent without credentials (possibly before another thread set up
        auth for this host) just retries with the host's handler. A 401 to a request that
        carried credentials drops the cached tokens of that realm once: the registry may now
        want a different scope."""
        challenges = parse_www_authenticate(_header_values(resp, "WWW-Authenticate"))
        usable = [c for c in challenges if c.scheme in ("bearer", "basic")]
        with self._lock:
            state = self._auth.setdefault(netloc, _AuthState())
            if not usable:
                return not sent_auth and state.challenge is not None
            chosen = usable[0]
            if sent_auth and chosen.scheme == "basic":
                return False  # the password was refused: sending it again will not help
            if sent_auth and chosen.scheme == "bearer":
                realm = chosen.realm or ""
                self._tokens = {k: v for k, v in self._tokens.items() if k[0] != realm}
            if state.challenge is None or sent_auth:
                state.challenge = chosen
        return not (chosen.scheme == "basic" and self._credential(netloc) is None)

    # requests ---------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        host: RegistryHost,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: Callable[[], bytes | Iterable[bytes]] | None = None,
        stream: bool = False,
        retry: bool = True,
        ok_statuses: Iterable[int] = (),
    ) -> Response:
        """One logical request: auth challenges, redirects (credentials only to the same host),
        retries of transport errors and 408/429/5xx with backoff, https→http fallback."""
        attempts = 0
        auth_retries = 0
        while True:
            attempts += 1
            try:
                resp = self._send(method, host, url, headers or {}, body, stream)
            except TRANSPORT_ERRORS as exc:
                if self._fallback_to_http(host, url, exc):
                    url = _with_scheme(url, "http")
                    attempts -= 1
                    continue
                if retry and attempts < MAX_ATTEMPTS and self._may_retry(host, exc):
                    delay = _backoff(attempts)
                    self._log(f"retrying {method} {url} in {delay:.2f}s after: {exc}")
                    time.sleep(delay)
                    continue
                lookup = self._lookup()
                reason = describe_transport_error(
                    exc,
                    url,
                    host.client,
                    tls_fix=tls_fix(host, lookup),
                    where=endpoint_from(host, lookup),
                )
                if attempts > 1:
                    reason += f" (gave up after {attempts} attempts)"
                raise TransportError(reason) from None
            except HTTP_ERRORS as exc:
                raise RegistryError(f"{method} {url}: {_short(str(exc))}") from None
            status = resp.status_code
            if status == 401:
                netloc = urlsplit(resp.url).netloc
                sent_auth = "Authorization" in resp.request.headers
                if auth_retries < 2 and self._handle_401(resp, netloc, sent_auth):
                    auth_retries += 1
                    resp.close()
                    attempts -= 1
                    continue
                resp.hint = self._unauthorized_hint(resp, netloc, sent_auth)
            if (
                retry
                and status in RETRY_STATUSES
                and attempts < MAX_ATTEMPTS
                and status not in ok_statuses
            ):
                delay = _retry_after(resp, attempts)
                self._log(f"retrying {method} {url} in {delay:.2f}s after HTTP {status}")
                resp.close()
                time.sleep(delay)
                continue
            if attempts > 1 and status in RETRY_STATUSES:
                resp.attempts = attempts
            return resp

    def _unauthorized_hint(self, resp: Response, netloc: str, sent_auth: bool) -> str:
        """What to tell the operator about a final 401 (and which configuration gave the
        endpoint)."""
        challenges = parse_www_authenticate(_header_values(resp, "WWW-Authenticate"))
        if self._credential(netloc) is not None and any(
            c.error == "insufficient_scope" for c in challenges
        ):
            return "denied"
        entry = next((h for h in self.hosts if h.host == netloc), None)
        where = f"; {endpoint_from(entry, self._lookup())}" if entry is not None else ""
        if self._credential(netloc) is None:
            return f"no credentials for {self.ref_host}: run pyctl login {self.ref_host}{where}"
        return (
            f"the credentials for {self.ref_host} were refused: run pyctl login "
            f"{self.ref_host}{where}"
        )

    def _lookup(self) -> HostsLookup | None:
        """Where the hosts configuration was looked for (for messages), once, when needed."""
        if self.hosts_dirs is None:
            return None
        if self._hosts_lookup is None:
            self._hosts_lookup = HostsLookup.of(self.ref_host, self.hosts_dirs)
        return self._hosts_lookup

    def _may_retry(self, host: RegistryHost, exc: BaseException) -> bool:
        """Transport errors are retried only on the last endpoint (or the push endpoint):
        a failing mirror falls through to the next one at once, as in containerd. TLS and
        name-resolution failures are never retried: they do not go away in a second."""
        if is_tls_error(exc):
            return False
        low = str(exc).lower()
        if "failed to resolve" in low or "name or service not known" in low:
            return False
        if "certificate" in low or "wrong version number" in low:
            return False
        last = self.hosts[-1] if self.hosts else host
        return host == last or (self.push and host.has("push"))

    def _fallback_to_http(self, host: RegistryHost, url: str, exc: BaseException) -> bool:
        if not url.startswith("https://"):
            return False
        if not (host.http_fallback or self.insecure):
            return False
        low = str(exc).lower()
        plaintext = (
            "wrong version number" in low
            or "record layer failure" in low
            or "http request to an https server" in low
            or "unknown protocol" in low
            or "tls handshake timeout" in low
        )
        refused = "refused" in low
        if plaintext or refused:
            self._plain_http.add(urlsplit(url).netloc)
            self._log(f"{urlsplit(url).netloc}: no TLS there, using plain HTTP")
            return True
        return False

    def _send(
        self,
        method: str,
        host: RegistryHost,
        url: str,
        extra: Mapping[str, str],
        body: Callable[[], bytes | Iterable[bytes]] | None,
        stream: bool,
    ) -> Response:
        session = self._session(host)
        origin = urlsplit(url).netloc
        current = url
        for _hop in range(MAX_REDIRECTS + 1):
            netloc = urlsplit(current).netloc
            headers = {"User-Agent": USER_AGENT}
            if netloc == origin:
                for k, vs in host.headers.items():
                    headers[k] = ", ".join(vs)
            headers.update(extra)
            if netloc == origin:
                authz = self._authorization(current, host)
                if authz:
                    headers["Authorization"] = authz
            data = _prepare_body(body(), extra) if body is not None else None
            if self.debug:
                shown = redact_headers(headers)
                self._log(f"http {method} {current} {json.dumps(shown)}")
            resp = session.request(
                method,
                current,
                headers=headers,
                body=data,
                timeout=(host.dial_timeout or CONNECT_TIMEOUT, READ_TIMEOUT),
            )
            self._log(f"http {method} {current} -> {resp.status_code}")
            redirect = resp.status_code in (301, 302, 303, 307, 308) and "Location" in resp.headers
            if redirect or not stream:
                # Bodies that are read whole are read with a cap: an endless answer must
                # neither hang nor fill the memory.
                _load_body(resp, MAX_ANSWER)
            if redirect:
                nxt = urljoin(current, resp.headers["Location"])
                resp.close()
                if resp.status_code == 303 or (resp.status_code in (301, 302) and method == "POST"):
                    method = "GET" if method != "HEAD" else "HEAD"
                    body = None
                current = nxt
                continue
            return resp
        raise RegistryError(f"{method} {url}: stopped after {MAX_REDIRECTS} redirects")

    # distribution API -------------------------------------------------------------------------

    def _hosts_for(self, capability: str) -> list[RegistryHost]:
        hosts = [h for h in self.hosts if h.has(capability)]
        if not hosts:
            raise RegistryError(
                f"no endpoint of {self.ref_host} has the {capability} capability "
                "(check its hosts.toml)"
            )
        return hosts

    def resolve(self, reference: str) -> tuple[Descriptor, RegistryHost]:
        """Tag or digest → descriptor of the manifest/index, trying mirrors then the server."""
        by_digest = reference.startswith("sha256:")
        candidates = (
            self._hosts_for("pull")
            if by_digest
            else [h for h in self.hosts if h.has("pull") and h.has("resolve")]
        )
        if not candidates:
            raise RegistryError(
                f"no endpoint of {self.ref_host} can resolve tags (check its hosts.toml)"
            )
        errors: list[tuple[int, RegistryError]] = []
        for host in candidates:
            url = self.url(host, "manifests", reference)
            try:
                desc = self._resolve_at(host, url, reference)
            except RegistryNotFound as exc:
                errors.append((2, exc))
                continue
            except TransportError as exc:
                errors.append((1, exc))
                continue
            except RegistryError as exc:
                errors.append((3, exc))
                continue
            return desc, host
        worst = max(errors, key=lambda e: e[0])
        if worst[0] == 2:  # not found where it was asked (others unreachable): say each
            text = "; ".join(e.message for _, e in errors)
            raise RegistryNotFound(text, 404, worst[1].code)
        raise worst[1]

    def _not_found(
        self, host: RegistryHost, resp: Response, reference: str
    ) -> RegistryNotFound:
        """A 404 for ``reference``, saying what is missing where: the repository, or the tag
        or digest in it. Registries answer MANIFEST_UNKNOWN for both (distribution does), so
        the repository's tag list decides."""
        code = decode_error(resp).code
        where = urlunsplit((*urlsplit(resp.url)[:2], "", "", ""))
        kind = "manifest" if reference.startswith("sha256:") else "tag"
        repo = self.repository
        tags = None if code == "NAME_UNKNOWN" else self._tags(host)
        if code == "NAME_UNKNOWN" or tags == "absent":
            text = f"repository {repo} not found at {where}"
        elif isinstance(tags, list) or code == "MANIFEST_UNKNOWN":
            text = f"{kind} {reference} not found in repository {repo} at {where}"
            if tags and isinstance(tags, list) and kind == "tag":
                text += f" (its tags: {', '.join(tags[:5])}{', …' if len(tags) > 5 else ''})"
        else:  # a bare 404, and no tag list to tell
            text = f"{kind} {reference} or repository {repo} not found at {where}"
        return RegistryNotFound(text, 404, code or "NOT_FOUND")

    def _tags(self, host: RegistryHost) -> list[str] | str | None:
        """The repository's tags at ``host`` (sorted), ``"absent"`` when the registry says the
        repository does not exist, None when it does not say."""
        try:
            resp = self.request("GET", host, self.url(host, "tags", "list"), stream=True)
            if resp.status_code == 404:  # distribution says NAME_UNKNOWN; a bare 404 says less
                return "absent" if decode_error(resp).code == "NAME_UNKNOWN" else None
            if resp.status_code != 200:
                return None
            doc = json.loads(_body_prefix(resp, MAX_ANSWER))
        except (RegistryError, ValueError, RecursionError):
            return None
        tags = doc.get("tags") if isinstance(doc, dict) else None
        if tags is None:
            return []  # distribution: a repository whose tags were all deleted
        if not isinstance(tags, list):
            return None
        return sorted(str(t) for t in tags)

    def _resolve_at(self, host: RegistryHost, url: str, reference: str) -> Descriptor:
        headers = {"Accept": MANIFEST_ACCEPT}
        resp = self.request("HEAD", host, url, headers=headers)
        if resp.status_code in (403, 404, 405):
            # HEAD answers carry no body: a GET says why (which of repository or tag is
            # missing, what was denied)
            resp = self.request("GET", host, url, headers=headers, stream=True)
        if resp.status_code == 404:
            raise self._not_found(host, resp, reference)
        if resp.status_code >= 400:
            raise decode_error(resp)
        if resp.status_code >= 300:
            raise RegistryError(f"unexpected status {resp.status_code} resolving {reference}")
        media_type = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
        digest = resp.headers.get("Docker-Content-Digest", "").strip()
        if digest_problem(digest):
            digest = ""  # unusable: hash the body instead
        length = resp.headers.get("Content-Length") or ""
        if reference.startswith("sha256:"):
            digest = reference
        known_length = length.isascii() and length.isdigit()
        if resp.request.method == "HEAD" and digest and known_length and media_type:
            size = int(length)
            if size > MAX_MANIFEST_SIZE:
                raise RegistryError(f"manifest {reference} is too large ({size} bytes)")
            return Descriptor(media_type=media_type, digest=digest, size=size)
        # Fall back to GET and hash the body.
        if resp.request.method == "HEAD":
            resp = self.request("GET", host, url, headers=headers, stream=True)
            if resp.status_code >= 400:
                raise decode_error(resp)
            media_type = (resp.headers.get("Content-Type") or media_type).split(";")[0].strip()
        data = _read_capped(resp, MAX_MANIFEST_SIZE, f"manifest {reference}")
        computed = sha256_digest(data)
        if reference.startswith("sha256:") and computed != reference:
            raise RegistryError(
                f"manifest {reference}: the registry returned content with digest {computed}"
            )
        if not media_type or media_type in ("application/json", "text/plain"):
            media_type = _sniff_media_type(data)
        return Descriptor(media_type=media_type, digest=computed, size=len(data))

    def fetch_bytes(self, desc: Descriptor, limit: int = MAX_MANIFEST_SIZE) -> bytes:
        """A manifest, index or config, whole, verified against ``desc``."""
        if desc.size > limit:
            raise RegistryError(f"{desc.digest} is too large ({desc.size} bytes, limit {limit})")
        kind = "manifests" if is_manifest(desc.media_type) or is_index(desc.media_type) else "blobs"
        last: RegistryError | None = None
        for host in self._hosts_for("pull"):
            url = self.url(host, kind, desc.digest)
            # Bytes that do not match the digest are fetched once more (a proxy that cut or
            # mangled one answer); a second bad answer means the registry serves them.
            for attempt in (1, 2):
                data = self._fetch_small(host, url, desc, limit)
                if isinstance(data, RegistryError):
                    last = _about(data, f"{kind[:-1]} {desc.digest}")
                    break
                if sha256_digest(data) == desc.digest and len(data) == desc.size:
                    return data
                last = RegistryError(
                    f"{kind[:-1]} {desc.digest}: {host.host} returned {len(data)} bytes with "
                    f"digest {sha256_digest(data)} (expected {desc.size} bytes)"
                )
                if attempt == 1:
                    self._log(f"fetching {desc.digest} again after: {last}")
        assert last is not None
        raise last

    def _fetch_small(
        self, host: RegistryHost, url: str, desc: Descriptor, limit: int
    ) -> bytes | RegistryError:
        """GET a small document from one host; a connection dropped while the body arrives is
        retried (``request`` retries only up to the response headers). Errors are returned."""
        failures = 0
        while True:
            try:
                resp = self.request(
                    "GET", host, url, headers={"Accept": f"{desc.media_type}, */*"}, stream=True
                )
            except RegistryError as exc:
                return exc
            if resp.status_code >= 400:
                return decode_error(resp)
            try:
                return _read_capped(resp, limit, desc.digest)
            except TransportError as exc:
                failures += 1
                if failures >= MAX_ATTEMPTS:
                    return exc
                self._log(f"retrying {desc.digest} after: {exc}")
                time.sleep(_backoff(failures))
            except RegistryError as exc:
                return exc

    def open_blob(self, desc: Descriptor, offset: int = 0) -> Iterator[bytes]:
        """Stream a blob from ``offset``; a dropped connection is resumed with ``Range``."""
        kind = "manifests" if is_manifest(desc.media_type) or is_index(desc.media_type) else "blobs"
        hosts = self._hosts_for("pull")
        host_index = 0
        position = offset
        failures = 0
        failed_at = -1  # position at the last broken transfer
        last: RegistryError | None = None
        while position < desc.size or desc.size == 0:
            if host_index >= len(hosts):
                assert last is not None
                raise _about(last, f"{kind[:-1]} {desc.digest}")
            host = hosts[host_index]
            url = self.url(host, kind, desc.digest)
            headers = {"Accept-Encoding": "identity"}
            if position:
                headers["Range"] = f"bytes={position}-"
            try:
                resp = self.request("GET", host, url, headers=headers, stream=True)
            except RegistryError as exc:
                last = exc
                host_index += 1
                continue
            if resp.status_code >= 400:
                last = decode_error(resp)
                resp.close()
                host_index += 1
                continue
            skip = 0
            if position:
                content_range = resp.headers.get("Content-Range", "")
                if resp.status_code == 206:
                    if not content_range.startswith(f"bytes {position}-"):
                        resp.close()
                        raise RegistryError(
                            f"{desc.digest}: registry answered range {content_range!r}, "
                            f"asked for bytes={position}-"
                        )
                elif resp.status_code == 200:
                    if content_range and not content_range.startswith(f"bytes {position}-"):
                        skip = position
                    elif not content_range:
                        skip = position  # range ignored: discard what we already have
            try:
                for chunk in _iter_body(resp):
                    if skip:
                        if len(chunk) <= skip:
                            skip -= len(chunk)
                            continue
                        chunk = chunk[skip:]
                        skip = 0
                    position += len(chunk)
                    if position > desc.size:
                        raise RegistryError(
                            f"{desc.digest}: registry sent more than the {desc.size} bytes expected"
                        )
                    yield chunk
            except TRANSPORT_ERRORS as exc:
                # A drop after progress starts the count again: a long download over a flaky
                # network may need many resumes, a connection that dies at once does not.
                failures = 1 if position > failed_at else failures + 1
                failed_at = position
                resp.close()
                if failures >= MAX_ATTEMPTS:
                    reason = describe_transport_error(exc, url)
                    raise TransportError(
                        f"{kind[:-1]} {desc.digest}: gave up after {failures} broken "
                        f"transfers: {reason}"
                    ) from None
                self._log(f"resuming {desc.digest} at byte {position} after: {exc}")
                time.sleep(_backoff(failures))
                continue
            except HTTP_ERRORS as exc:
                raise RegistryError(f"{kind[:-1]} {desc.digest}: {_short(str(exc))}") from None
            finally:
                resp.close()
            if position < desc.size:
                failures = 1 if position > failed_at else failures + 1
                failed_at = position
                if failures >= MAX_ATTEMPTS:
                    raise TransportError(
                        f"{kind[:-1]} {desc.digest}: connection closed after {position} of "
                        f"{desc.size} bytes (gave up after {failures} attempts)"
                    )
                self._log(f"resuming {desc.digest} at byte {position} (short body)")
                continue
            return
        return

    # push -------------------------------------------------------------------------------------

    def push_host(self) -> RegistryHost:
        return self._hosts_for("push")[0]

    def blob_exists(self, host: RegistryHost, digest: str) -> bool:
        resp = self.request("HEAD", host, self.url(host, "blobs", digest))
        resp.close()
        if resp.status_code == 200:
            return True
        if resp.status_code == 404:
            return False
        raise decode_error(resp)

    def mount_blob(self, host: RegistryHost, digest: str, from_repo: str) -> bool:
        """Cross-repository mount; False when the registry wants an upload instead."""
        saved = self.extra_scopes
        self.extra_scopes = merge_scopes(saved, [f"repository:{from_repo}:pull"])
        try:
            url = self.url(host, "blobs", "uploads/", query={"mount": digest, "from": from_repo})
            resp = self.request("POST", host, url, headers={"Content-Length": "0"})
        finally:
            self.extra_scopes = saved
        resp.close()
        if resp.status_code == 201:
            return True
        if resp.status_code in (202, 401, 403, 404, 405):
            if resp.status_code == 202:
                self._cancel_upload(host, resp)
            return False
        raise decode_error(resp)

    def _cancel_upload(self, host: RegistryHost, resp: Response) -> None:
        loc = resp.headers.get("Location")
        if loc:
            with contextlib.suppress(RegistryError, *TRANSPORT_ERRORS):
                self.request("DELETE", host, urljoin(resp.url, loc), retry=False).close()

    def upload_blob(
        self,
        host: RegistryHost,
        desc: Descriptor,
        opener: Callable[[], Iterable[bytes]],
        *,
        chunk_size: int = 64 << 20,
    ) -> None:
        """POST a session, then PUT the blob monolithically, or PATCH it in chunks when it is
        larger than ``chunk_size``; the registry checks the digest on the final PUT."""
        resp = self.request(
            "POST", host, self.url(host, "blobs", "uploads/"), headers={"Content-Length": "0"}
        )
        resp.close()
        if resp.status_code == 201:
            return  # the registry already had it
        if resp.status_code not in (200, 202, 204):
            raise decode_error(resp)
        location = self._location(resp)
        if desc.size <= chunk_size:
            url = _add_query(location, {"digest": desc.digest})
            put = self.request(
                "PUT",
                host,
                url,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(desc.size),
                },
                body=lambda: _iter_counted(opener(), desc.size),
            )
            put.close()
            if put.status_code not in (200, 201, 202, 204):
                raise decode_error(put)
            return
        start = 0
        buf = bytearray()

        def patch(data: bytes) -> None:
            nonlocal location, start
            end = start + len(data) - 1
            r = self.request(
                "PATCH",
                host,
                location,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(len(data)),
                    "Content-Range": f"{start}-{end}",
                },
                body=lambda: data,
            )
            r.close()
            if r.status_code not in (202, 204):
                raise decode_error(r)
            location = self._location(r)
            start = end + 1

        for chunk in opener():
            buf += chunk
            while len(buf) >= chunk_size:
                patch(bytes(buf[:chunk_size]))
                del buf[:chunk_size]
        if buf:
            patch(bytes(buf))
        put = self.request(
            "PUT",
            host,
            _add_query(location, {"digest": desc.digest}),
            headers={"Content-Length": "0"},
        )
        put.close()
        if put.status_code not in (200, 201, 202, 204):
            raise decode_error(put)

    def _location(self, resp: Response) -> str:
        loc = resp.headers.get("Location")
        if not loc:
            raise RegistryError("registry did not return an upload location")
        url = urljoin(resp.url, loc)
        host = next((h for h in self.hosts if h.has("push")), None)
        if host is not None and host.needs_ns(self.ref_host):
            url = _add_query(url, {"ns": self.ref_host})
        return url

    def manifest_exists(self, host: RegistryHost, reference: str, digest: str) -> bool:
        resp = self.request(
            "HEAD",
            host,
            self.url(host, "manifests", reference),
            headers={"Accept": MANIFEST_ACCEPT},
        )
        resp.close()
        if resp.status_code == 200:
            return (
                resp.headers.get("Docker-Content-Digest", "") == digest
                if not reference.startswith("sha256:")
                else True
            )
        if resp.status_code == 404:
            return False
        raise decode_error(resp)

    def put_manifest(
        self, host: RegistryHost, reference: str, desc: Descriptor, data: bytes
    ) -> str:
        resp = self.request(
            "PUT",
            host,
            self.url(host, "manifests", reference),
            headers={"Content-Type": desc.media_type, "Content-Length": str(len(data))},
            body=lambda: data,
        )
        resp.close()
        if resp.status_code not in (200, 201, 202, 204):
            raise decode_error(resp)
        got = resp.headers.get("Docker-Content-Digest")
        if got and got != desc.digest:
            raise RegistryError(
                f"registry stored manifest {reference} as {got}, expected {desc.digest}"
            )
        return desc.digest

    def ping(self, host: RegistryHost) -> None:
        """GET /v2/ with authentication, for login."""
        url = f"{host.scheme}://{host.host}{host.path}/"
        if host.scheme == "https" and host.host in self._plain_http:
            url = _with_scheme(url, "http")
        resp = self.request("GET", host, url)
        resp.close()
        if resp.status_code == 401:
            raise RegistryError("unauthorized: incorrect username or password", 401, "UNAUTHORIZED")
        if resp.status_code >= 400 and resp.status_code != 404:
            raise decode_error(resp)


def _token_request(
    session: Session,
    method: str,
    url: str,
    realm: str,
    headers: Mapping[str, str],
    *,
    form: Mapping[str, str] | None = None,
    basic: tuple[str, str] | None = None,
) -> Response:
    """One request to the token server ``realm``; its failures named as the token server's."""
    try:
        return session.request(
            method,
            url,
            headers=headers,
            form=form,
            basic=basic,
            timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
        )
    except TRANSPORT_ERRORS as exc:
        raise TransportError(f"token server: {describe_transport_error(exc, realm)}") from None
    except HTTP_ERRORS as exc:
        raise RegistryError(f"token server {realm}: {_short(str(exc))}") from None


def _header_values(resp: Response, name: str) -> list[str]:
    return list(resp.headers.getlist(name))


def _iter_body(resp: Response) -> Iterator[bytes]:
    """A streamed body in socket-sized pieces (``READ_PIECE``), each handed out as soon as it
    arrives: when the connection drops, a resume with ``Range`` loses at most one piece
    (urllib3 discards a partly filled read when the connection breaks). The destination
    gathers pieces into larger writes itself."""
    encoding = (resp.headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding != "identity":
        yield from resp.iter_content(READ_PIECE)  # urllib3 decodes it
        return
    yield from resp.raw.stream(READ_PIECE, decode_content=False)


def _load_body(resp: Response, limit: int) -> None:
    """Read the body of a streamed response into ``resp.content``, at most ``limit`` bytes.
    Transport errors propagate (the request is then retried)."""
    buf = bytearray()
    try:
        for chunk in resp.iter_content(CHUNK):
            buf += chunk
            if len(buf) > limit:
                raise RegistryError(
                    f"{resp.request.method} {resp.url}: the answer is larger than {limit} bytes"
                )
    finally:
        resp.close()  # the connection goes back to the pool when the body was read
    resp.content = bytes(buf)


def _body_prefix(resp: Response, limit: int) -> bytes:
    """The first ``limit`` bytes of the body (an error message), without reading more."""
    if resp.content is not None:  # read already
        return resp.content[:limit]
    buf = bytearray()
    try:
        for chunk in resp.iter_content(CHUNK):
            buf += chunk
            if len(buf) >= limit:
                break
    finally:
        resp.close()
    return bytes(buf[:limit])


def _read_token(resp: Response) -> bytes:
    try:
        return _read_capped(resp, MAX_TOKEN_ANSWER, "token server answer")
    except TransportError as exc:
        raise TransportError(f"token server: {exc}") from None


def _read_capped(resp: Response, limit: int, what: str) -> bytes:
    buf = bytearray()
    try:
        for chunk in resp.iter_content(CHUNK):
            buf += chunk
            if len(buf) > limit:
                raise RegistryError(f"{what} is larger than {limit} bytes")
    except TRANSPORT_ERRORS as exc:
        raise TransportError(f"{what}: {describe_transport_error(exc, resp.url)}") from None
    except HTTP_ERRORS as exc:
        raise RegistryError(f"{what}: {_short(str(exc))}") from None
    finally:
        resp.close()
    return bytes(buf)


def _about(err: RegistryError, what: str) -> RegistryError:
    """``err`` with ``what`` (e.g. ``blob sha256:…``) in front, unless it names it already."""
    digest = what.rsplit(" ", 1)[-1]
    if digest in str(err):
        return err
    cls = type(err)
    out = cls(f"{what}: {err}", err.status, err.code)
    return out


def _usable_url(url: str | None) -> bool:
    """An absolute http(s) URL naming a host (a token realm, before anything is sent)."""
    if not url or not url.startswith(("http://", "https://")):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (validates the port)
    except ValueError:
        return False
    return bool(parts.hostname) and not any(c in url for c in "\x00\r\n\t ")


def _sniff_media_type(data: bytes) -> str:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return ""
    if isinstance(doc, dict):
        if isinstance(doc.get("mediaType"), str):
            return str(doc["mediaType"])
        if "manifests" in doc:
            return "application/vnd.oci.image.index.v1+json"
        if "layers" in doc:
            return "application/vnd.oci.image.manifest.v1+json"
    return ""


def _with_scheme(url: str, scheme: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((scheme, *parts[1:]))


def _add_query(url: str, params: Mapping[str, str]) -> str:
    from urllib.parse import parse_qsl

    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.update(params)
    return urlunsplit(
        (parts.scheme, parts.netloc, parts.path, urlencode(sorted(query.items())), "")
    )


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


def _prepare_body(data: bytes | Iterable[bytes], headers: Mapping[str, str]) -> bytes | _SizedBody:
    if isinstance(data, bytes):
        return data
    if isinstance(data, list | tuple):
        return b"".join(data)
    length = headers.get("Content-Length")
    if length is None or not length.isdigit():
        raise PyctlError("internal: a streamed request body needs a Content-Length")
    return _SizedBody(data, int(length))


def _iter_counted(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    total = 0
    for chunk in chunks:
        total += len(chunk)
        yield chunk
    if total != size:
        raise PyctlError(f"blob source gave {total} bytes, expected {size}")
