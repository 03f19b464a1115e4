"""A Harbor/Docker-Hub-like token server for distribution's ``auth.token`` scheme.

Stdlib + ``cryptography``.  Runs in a background thread (``ThreadingHTTPServer``), plain HTTP
or HTTPS, on 127.0.0.1.  It issues RS256-signed JWTs that ``docker-registry`` (distribution
v2.8) accepts: the JWT header carries ``kid`` = the libtrust key ID of the signing key (and,
with ``header="x5c"``, the signing certificate instead), the registry's ``rootcertbundle`` is
the self-signed signing certificate this server writes (:attr:`TokenServer.cert_path`).

Endpoints (``path`` defaults to ``/token``):

* ``GET  /token?service=S&scope=repository:foo:pull&scope=...`` with optional Basic auth
  (``offline_token=true`` also returns a ``refresh_token``) → ``{"token", "access_token",
  "expires_in", "issued_at"}``
* ``POST /token`` (OAuth2 form: ``grant_type=password|refresh_token``, ``username``,
  ``password``, ``refresh_token``, ``scope`` (space separated), ``service``, ``client_id``,
  ``access_type=offline`` → also ``refresh_token``) → ``{"access_token", "expires_in",
  "issued_at", "scope"[, "refresh_token"]}``

Wrong credentials → 401; anonymous requests get a token with ``pull`` on the repositories
matching ``public_repos`` (and nothing else), or 401 if ``anonymous=False``.  Permissions are
``{user: {repo_glob: actions}}`` (``fnmatch`` globs; actions a list or ``"pull,push"``;
``"*"`` grants every requested action).  A glob starting with ``<type>:`` applies to another
resource type, e.g. ``{"registry:catalog": "*"}``.

Every request is recorded in :attr:`TokenServer.requests` (:class:`TokenRequest`) without
secrets: passwords and refresh tokens are never stored there.

Also used by :mod:`integration.faultproxy` for its background server plumbing
(:class:`BackgroundHTTPServer`).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import fnmatch
import hashlib
import http.server
import json
import os
import secrets
import shutil
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

from .testbed import CertAuthority, Service, bed_directory, free_port

__all__ = [
    "Access",
    "BackgroundHTTPServer",
    "QuietHandler",
    "TokenRequest",
    "TokenServer",
    "b64url",
    "b64url_decode",
    "decode_jwt",
    "libtrust_key_id",
    "parse_scope",
    "wait_for",
]


# ==============================================================================================
# background HTTP(S) server plumbing


class _ThreadingServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[http.server.BaseHTTPRequestHandler],
        ssl_context: ssl.SSLContext | None,
        owner: BackgroundHTTPServer,
    ) -> None:
        self.ssl_context = ssl_context
        self.owner = owner
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        if self.ssl_context is not None:
            # handshake happens in the handler thread (BaseHandler.handle), not here
            sock = self.ssl_context.wrap_socket(
                sock, server_side=True, do_handshake_on_connect=False
            )
        with self.conn_lock:
            self.connections.add(sock)
        return sock, addr

    def shutdown_request(self, request: Any) -> None:
        with self.conn_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        exc = sys.exc_info()[1]
        if exc is not None:
            self.owner.errors.append(f"{type(exc).__name__}: {exc}")

    def close_connections(self) -> None:
        with self.conn_lock:
            conns = list(self.connections)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """Base handler: HTTP/1.1 keep-alive, TLS handshake in the handler thread, no logging."""

    protocol_version = "HTTP/1.1"
    server_version = "pyctl-testbed"
    sys_version = ""
    timeout = 60.0
    server: _ThreadingServer

    def handle(self) -> None:
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                self.connection.do_handshake()
            except (ssl.SSLError, OSError) as e:
                self.server.owner.tls_errors.append(f"{type(e).__name__}: {e}")
                self.close_connection = True
                return
        with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError):
            super().handle()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # helpers --------------------------------------------------------------------------------

    def read_body(self) -> bytes:
        """The whole request body (Content-Length or chunked)."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return b"".join(self.iter_chunked_body())
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def iter_chunked_body(self) -> Iterable[bytes]:
        while True:
            line = self.rfile.readline(65537)
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                # trailers up to the empty line
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                return
            data = self.rfile.read(size)
            self.rfile.readline(3)  # CRLF
            yield data

    def send_bytes(
        self,
        status: int,
        body: bytes,
        headers: Mapping[str, str] | Sequence[tuple[str, str]] = (),
        *,
        content_type: str | None = "application/json",
    ) -> None:
        self.send_response(status)
        items = headers.items() if isinstance(headers, Mapping) else headers
        names = {k.lower() for k, _ in items}
        if content_type and "content-type" not in names:
            self.send_header("Content-Type", content_type)
        for k, v in items:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
        self.send_bytes(status, json.dumps(obj).encode(), headers or {})


class BackgroundHTTPServer(Service):
    """A ``ThreadingHTTPServer`` in a daemon thread on ``host:port`` (free port by default),
    HTTPS if ``tls`` (a :class:`~integration.testbed.CertPair`-like object with ``cert``,
    ``key`` and ``ca`` paths) is given; ``client_ca`` makes it require client certificates."""

    def __init__(
        self,
        handler: type[QuietHandler],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: Any = None,
        client_ca: str | os.PathLike[str] | None = None,
    ) -> None:
        self.handler = handler
        self.bind_host = host
        self.requested_port = port
        self.tls = tls
        self.client_ca = client_ca
        self.errors: list[str] = []
        self.tls_errors: list[str] = []
        self._server: _ThreadingServer | None = None
        self._thread: threading.Thread | None = None
        self.port = port

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    @property
    def host(self) -> str:
        return f"{self.bind_host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def _ssl_context(self) -> ssl.SSLContext | None:
        if self.tls is None:
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.tls.cert), str(self.tls.key))
        if self.client_ca is not None:
            ctx.load_verify_locations(cafile=str(self.client_ca))
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def start_server(self) -> None:
        if self._server is not None:
            raise RuntimeError("server already started")
        srv = _ThreadingServer(
            (self.bind_host, self.requested_port), self.handler, self._ssl_context(), self
        )
        self._server = srv
        self.port = srv.server_address[1]
        self._thread = threading.Thread(
            target=srv.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{self.port}",
            daemon=True,
        )
        self._thread.start()

    # start/stop, and `with` (subclasses extend _teardown with their own clean-up)
    def start(self) -> Self:
        self.start_server()
        return self

    def _teardown(self) -> None:
        self.stop_server()

    def stop_server(self) -> None:
        srv, self._server = self._server, None
        if srv is None:
            return
        srv.shutdown()
        srv.server_close()
        srv.close_connections()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


# ==============================================================================================
# JWT helpers


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def libtrust_key_id(public_key: Any) -> str:
    """docker/libtrust key ID: base32 of the first 240 bits of SHA-256 over the DER
    (PKIX SubjectPublicKeyInfo) public key, ``=`` stripped, grouped by 4 with ``:``."""
    from cryptography.hazmat.primitives import serialization

    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(b32[i : i + 4] for i in range(0, len(b32), 4))


def decode_jwt(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a compact JWT, signature not checked."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a compact JWT")
    header: dict[str, Any] = json.loads(b64url_decode(parts[0]))
    claims: dict[str, Any] = json.loads(b64url_decode(parts[1]))
    return header, claims


@dataclass(frozen=True)
class Access:
    """One requested (or granted) resource scope."""

    type: str
    name: str
    actions: tuple[str, ...]

    def scope(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"

    def claim(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "actions": list(self.actions)}


def parse_scope(text: str) -> list[Access]:
    """``repository:foo/bar:pull,push`` (several may be space separated) → accesses.

    The name may contain ``host:port``: type is up to the first ``:``, actions after the
    last.  ``repository(plugin):name:pull`` keeps ``repository(plugin)`` as the type."""
    out: list[Access] = []
    for item in text.split():
        if item.count(":") < 2:
            continue
        rtype, rest = item.split(":", 1)
        name, actions = rest.rsplit(":", 1)
        acts = tuple(dict.fromkeys(a for a in actions.split(",") if a))
        out.append(Access(rtype, name, acts))
    return out


# ==============================================================================================
# token server


@dataclass(frozen=True)
class TokenRequest:
    """What a client sent to the token server (no passwords, no refresh tokens)."""

    method: str
    path: str
    query: dict[str, list[str]]  # GET query (POST: the form, with secrets removed)
    scopes: tuple[str, ...]  # every requested scope string, split on spaces
    service: str | None
    has_authorization: bool
    auth_scheme: str | None  # "basic", "bearer", ... (lowercase)
    username: str | None  # from Basic auth or the POST form
    grant_type: str | None  # POST only
    client_id: str | None
    offline: bool  # offline_token=true (GET) or access_type=offline (POST)
    user_agent: str | None
    status: int = 0  # response status
    subject: str | None = None  # whom the token was issued to ("" = anonymous)
    granted: tuple[str, ...] = ()  # granted scopes
    refresh_token_issued: bool = False


_SECRET_FORM_KEYS = frozenset({"password", "refresh_token"})


def _normalize_actions(actions: str | Iterable[str]) -> frozenset[str]:
    if isinstance(actions, str):
        actions = actions.split(",")
    return frozenset(a.strip() for a in actions if a.strip())


class TokenServer(BackgroundHTTPServer):
    """The token server; see the module docstring.

    * ``url`` (``scheme://127.0.0.1:PORT``), ``realm`` (``url + path``), ``host``, ``port``
    * ``cert_path``: the signing certificate (the registry's ``rootcertbundle``),
      ``key_id``: the libtrust key ID in every JWT header
    * ``requests``: list of :class:`TokenRequest`, :meth:`token_requests`, :meth:`scopes`,
      :meth:`clear`
    * :meth:`issue` mints a token directly; :meth:`fail_next` makes the next requests fail
    * :meth:`registry_config` is the ``auth.token`` section for docker-registry
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        users: Mapping[str, str] | None = None,
        permissions: Mapping[str, Mapping[str, str | Sequence[str]]] | None = None,
        public_repos: Sequence[str] = (),
        anonymous: bool = True,
        anonymous_actions: Sequence[str] = ("pull",),
        service: str = "pyctl-test-registry",
        issuer: str = "pyctl-test-token-issuer",
        expires_in: int = 300,
        path: str = "/token",
        tls: Any = None,
        header: Literal["kid", "x5c"] = "kid",
        allow_post: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        from cryptography.hazmat.primitives import serialization

        self.dir, self._own_dir = bed_directory(directory, "pyctl-tokenserver-")
        self.dir.mkdir(parents=True, exist_ok=True)
        super().__init__(_TokenHandler, host=host, port=port, tls=tls)
        self.users: dict[str, str] = dict(users or {})
        self.permissions: dict[str, dict[str, frozenset[str]]] = {
            u: {glob: _normalize_actions(a) for glob, a in perms.items()}
            for u, perms in (permissions or {}).items()
        }
        self.public_repos: list[str] = list(public_repos)
        self.anonymous = anonymous
        self.anonymous_actions = frozenset(anonymous_actions)
        self.service = service
        self.issuer = issuer
        self.expires_in = expires_in
        self.path = path
        self.header_mode = header
        self.allow_post = allow_post
        self.requests: list[TokenRequest] = []
        self._lock = threading.Lock()
        self._refresh_tokens: dict[str, str] = {}  # refresh token -> user
        self._failures: list[tuple[int, dict[str, str]]] = []

        # the signing key, with a self-signed certificate (the registry's rootcertbundle)
        signer = CertAuthority(
            self.dir, common_name="pyctl test token signer", key_type="rsa", name="token-signing"
        )
        self._key = signer.key
        self.key_id = libtrust_key_id(self._key.public_key())
        self._cert_der = signer.cert.public_bytes(serialization.Encoding.DER)
        self.cert_path = signer.cert_path
        self.key_path = signer.key_path

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def realm(self) -> str:
        return self.url + self.path

    @property
    def ca_path(self) -> Path | None:
        """The CA that signed this server's TLS certificate (None for plain HTTP)."""
        return Path(self.tls.ca) if self.tls is not None else None

    def reserve_port(self) -> int:
        """Pick the port now (before :meth:`start`) so the realm is known early."""
        if not self.port:
            self.port = free_port(self.bind_host)
            self.requested_port = self.port
        return self.port

    def _teardown(self) -> None:
        self.stop_server()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __repr__(self) -> str:
        return f"TokenServer(realm={self.realm!r}, service={self.service!r})"

    def registry_config(self) -> dict[str, Any]:
        """The ``auth`` section for a docker-registry config (call after the port is known:
        :meth:`reserve_port` or :meth:`start`)."""
        self.reserve_port()
        return {
            "token": {
                "realm": self.realm,
                "service": self.service,
                "issuer": self.issuer,
                "rootcertbundle": str(self.cert_path),
            }
        }

    # --- test controls -----------------------------------------------------------------------

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def token_requests(self, method: str | None = None) -> list[TokenRequest]:
        with self._lock:
            return [r for r in self.requests if method is None or r.method == method.upper()]

    def scopes(self) -> list[tuple[str, ...]]:
        """The requested scopes of every token request, in order."""
        return [r.scopes for r in self.token_requests()]

    def fail_next(
        self, status: int = 503, *, times: int = 1, headers: Mapping[str, str] | None = None
    ) -> None:
        """The next ``times`` token requests answer ``status`` (still recorded)."""
        with self._lock:
            self._failures.extend([(status, dict(headers or {}))] * times)

    def add_user(
        self, user: str, password: str, permissions: Mapping[str, str | Sequence[str]]
    ) -> None:
        self.users[user] = password
        self.permissions[user] = {g: _normalize_actions(a) for g, a in permissions.items()}

    def revoke_refresh_tokens(self) -> None:
        with self._lock:
            self._refresh_tokens.clear()

    # --- authorization -----------------------------------------------------------------------

    def allowed_actions(self, user: str | None, access: Access) -> frozenset[str]:
        """What ``user`` (None = anonymous) may do on ``access``'s resource."""
        allowed: set[str] = set()
        if user is None:
            if access.type == "repository" and any(
                fnmatch.fnmatchcase(access.name, g) for g in self.public_repos
            ):
                allowed |= self.anonymous_actions
            return frozenset(allowed)
        for glob, actions in self.permissions.get(user, {}).items():
            rtype, pattern = "repository", glob
            if ":" in glob:
                rtype, pattern = glob.split(":", 1)
            if rtype == access.type and fnmatch.fnmatchcase(access.name, pattern):
                allowed |= actions
        return frozenset(allowed)

    def grant(self, user: str | None, requested: Iterable[Access]) -> list[Access]:
        out: list[Access] = []
        for acc in requested:
            allowed = self.allowed_actions(user, acc)
            granted = tuple(a for a in acc.actions if "*" in allowed or a in allowed)
            if granted:
                out.append(Access(acc.type, acc.name, granted))
        return out

    def check_password(self, user: str, password: str) -> bool:
        expected = self.users.get(user)
        return expected is not None and secrets.compare_digest(expected.encode(), password.encode())

    # --- tokens ------------------------------------------------------------------------------

    def issue(
        self,
        subject: str,
        access: Iterable[Access | Mapping[str, Any]],
        *,
        expires_in: int | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        not_before: float | None = None,
    ) -> str:
        """A signed JWT for ``subject`` with ``access`` claims (bypasses permissions)."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        now = int(time.time())
        lifetime = self.expires_in if expires_in is None else expires_in
        header: dict[str, Any] = {"typ": "JWT", "alg": "RS256"}
        if self.header_mode == "x5c":
            header["x5c"] = [base64.b64encode(self._cert_der).decode()]
        else:
            header["kid"] = self.key_id
        claims = {
            "iss": self.issuer if issuer is None else issuer,
            "sub": subject,
            "aud": self.service if audience is None else audience,
            "exp": now + lifetime,
            "nbf": int(not_before) if not_before is not None else now - 1,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": [a.claim() if isinstance(a, Access) else dict(a) for a in access],
        }
        signing_input = (
            b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        sig = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + b64url(sig)

    def verify(self, token: str) -> dict[str, Any]:
        """Check a token's signature; returns its claims (raises ``ValueError``)."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        parts = token.split(".")
        if len(parts) != 3:
            raise ValueError("not a compact JWT")
        try:
            self._key.public_key().verify(
                b64url_decode(parts[2]),
                f"{parts[0]}.{parts[1]}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except InvalidSignature as e:
            raise ValueError("bad signature") from e
        return decode_jwt(token)[1]

    def new_refresh_token(self, user: str) -> str:
        tok = secrets.token_urlsafe(24)
        with self._lock:
            self._refresh_tokens[tok] = user
        return tok

    def refresh_token_user(self, token: str) -> str | None:
        with self._lock:
            return self._refresh_tokens.get(token)

    # internal: called by the handler
    def _record(self, req: TokenRequest) -> None:
        with self._lock:
            self.requests.append(req)

    def _take_failure(self) -> tuple[int, dict[str, str]] | None:
        with self._lock:
            return self._failures.pop(0) if self._failures else None


def _first(params: Mapping[str, list[str]], key: str) -> str | None:
    values = params.get(key)
    return values[0] if values else None


class _TokenHandler(QuietHandler):
    server_version = "pyctl-tokenserver"

    @property
    def ts(self) -> TokenServer:
        owner = self.server.owner
        assert isinstance(owner, TokenServer)
        return owner

    def _basic(self) -> tuple[bool, str | None, str | None, str | None]:
        """(has_authorization, scheme, user, password) from the Authorization header."""
        value = self.headers.get("Authorization")
        if value is None:
            return False, None, None, None
        scheme, _, rest = value.strip().partition(" ")
        if scheme.lower() != "basic":
            return True, scheme.lower(), None, None
        try:
            user, _, password = base64.b64decode(rest.strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return True, "basic", None, None
        return True, "basic", user, password

    def _unauthorized(self, rec: dict[str, Any], message: str) -> None:
        rec["status"] = 401
        self.ts._record(TokenRequest(**rec))
        self.send_json(
            401,
            {"errors": [{"code": "UNAUTHORIZED", "message": message}]},
            {"WWW-Authenticate": f'Basic realm="{self.ts.realm}"'},
        )

    def _respond_token(
        self,
        rec: dict[str, Any],
        user: str | None,
        requested: list[Access],
        *,
        oauth: bool,
        offline: bool,
    ) -> None:
        ts = self.ts
        granted = ts.grant(user, requested)
        token = ts.issue(user or "", granted)
        issued = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body: dict[str, Any] = {
            "access_token": token,
            "expires_in": ts.expires_in,
            "issued_at": issued,
        }
        if oauth:
            body["scope"] = " ".join(a.scope() for a in granted)
        else:
            body["token"] = token
        if offline and user is not None:
            body["refresh_token"] = ts.new_refresh_token(user)
        rec.update(
            status=200,
            subject=user or "",
            granted=tuple(a.scope() for a in granted),
            refresh_token_issued="refresh_token" in body,
        )
        ts._record(TokenRequest(**rec))
        self.send_json(200, body)

    def _base_record(
        self, query: dict[str, list[str]], form: dict[str, list[str]] | None
    ) -> tuple[dict[str, Any], list[Access]]:
        has_auth, scheme, user, _pw = self._basic()
        source = form if form is not None else query
        raw_scopes: list[str] = []
        for s in source.get("scope", []):
            raw_scopes.extend(s.split())
        requested: list[Access] = []
        for s in raw_scopes:
            requested.extend(parse_scope(s))
        if form is not None:
            offline = (form.get("access_type") or [""])[0] == "offline"
            username = (form.get("username") or [user or ""])[0] or None
        else:
            offline = (query.get("offline_token") or [""])[0].lower() == "true"
            username = user
        recorded_query = {
            k: v
            for k, v in (form if form is not None else query).items()
            if k not in _SECRET_FORM_KEYS
        }
        rec: dict[str, Any] = {
            "method": self.command,
            "path": urllib.parse.urlsplit(self.path).path,
            "query": recorded_query,
            "scopes": tuple(raw_scopes),
            "service": _first(source, "service"),
            "has_authorization": has_auth,
            "auth_scheme": scheme,
            "username": username,
            "grant_type": _first(form, "grant_type") if form is not None else None,
            "client_id": _first(source, "client_id"),
            "offline": offline,
            "user_agent": self.headers.get("User-Agent"),
        }
        return rec, requested

    def _not_found(self) -> None:
        self.send_json(404, {"errors": [{"code": "NOT_FOUND", "message": "no such endpoint"}]})

    def _failure(self, rec: dict[str, Any]) -> bool:
        fail = self.ts._take_failure()
        if fail is None:
            return False
        status, headers = fail
        rec["status"] = status
        self.ts._record(TokenRequest(**rec))
        self.send_json(
            status, {"errors": [{"code": "UNAVAILABLE", "message": "injected"}]}, headers
        )
        return True

    def do_GET(self) -> None:
        split = urllib.parse.urlsplit(self.path)
        if split.path != self.ts.path:
            self._not_found()
            return
        query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        rec, requested = self._base_record(query, None)
        if self._failure(rec):
            return
        has_auth, scheme, user, password = self._basic()
        if has_auth:
            if scheme != "basic" or user is None or password is None:
                self._unauthorized(rec, "unsupported authorization")
                return
            if not self.ts.check_password(user, password):
                self._unauthorized(rec, "invalid username or password")
                return
            self._respond_token(rec, user, requested, oauth=False, offline=rec["offline"])
            return
        if not self.ts.anonymous:
            self._unauthorized(rec, "authentication required")
            return
        self._respond_token(rec, None, requested, oauth=False, offline=False)

    def do_POST(self) -> None:
        split = urllib.parse.urlsplit(self.path)
        body = self.read_body()
        if split.path != self.ts.path:
            self._not_found()
            return
        if not self.ts.allow_post:
            self.send_json(405, {"errors": [{"code": "UNSUPPORTED", "message": "use GET"}]})
            return
        form = urllib.parse.parse_qs(body.decode(errors="replace"), keep_blank_values=True)
        rec, requested = self._base_record({}, form)
        rec["query"] = {
            **urllib.parse.parse_qs(split.query, keep_blank_values=True),
            **rec["query"],
        }
        if self._failure(rec):
            return
        grant = rec["grant_type"]
        offline = bool(rec["offline"])
        if grant == "password":
            user = (form.get("username") or [""])[0]
            password = (form.get("password") or [""])[0]
            if not self.ts.check_password(user, password):
                self._unauthorized(rec, "invalid username or password")
                return
            self._respond_token(rec, user, requested, oauth=True, offline=offline)
        elif grant == "refresh_token":
            refresh = (form.get("refresh_token") or [""])[0]
            owner = self.ts.refresh_token_user(refresh)
            if owner is None:
                self._unauthorized(rec, "invalid refresh token")
                return
            self._respond_token(rec, owner, requested, oauth=True, offline=offline)
        else:
            rec["status"] = 400
            self.ts._record(TokenRequest(**rec))
            self.send_json(400, {"error": "unsupported_grant_type"})


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until true or ``timeout``; returns its last value."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True
