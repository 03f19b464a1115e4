"""Bearer tokens: the scope a request needs, the token server's answer, and the cache of one
run's tokens, keyed by realm, service and scope set (each fetched once, however many requests
need it at the same time). The scopes are an argument of every request, never shared state."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from pyctl.errors import PyctlError, RegistryError
from pyctl.registry.challenge import Challenge
from pyctl.registry.credentials import REDACTED, Credential
from pyctl.registry.hosts.model import RegistryHost
from pyctl.registry.transport import Response, short

MAX_TOKEN_ANSWER = 1 << 20
EXPIRY_MARGIN = 5.0  # seconds: a token closer to its expiry than this is fetched anew

Scope = tuple[str, ...]


def repository_scope(path: str, actions: str | Iterable[str] = "pull") -> str:
    """``repository:<path>:<actions>``, e.g. ``repository:library/ubuntu:pull``. ``path`` is
    the repository path without the registry host; ``actions`` a string (``"pull,push"``) or
    an iterable of actions (joined with ``,`` in the order given)."""
    action_text = actions if isinstance(actions, str) else ",".join(actions)
    if not path or not action_text:
        raise PyctlError(f"invalid token scope for repository {path!r} ({action_text!r})")
    return f"repository:{path}:{action_text}"


def merge_scopes(*groups: Iterable[str]) -> tuple[str, ...]:
    """Union of scope lists, sorted lexicographically, exact-string dedup (containerd's
    ``GetTokenScopes``: ``...:pull`` and ``...:pull,push`` are both kept). Elements holding
    several space-separated scopes (a challenge's ``scope``) are split."""
    merged: set[str] = set()
    for group in groups:
        if isinstance(group, str):
            group = [group]
        for item in group:
            merged.update(item.split())
    return tuple(sorted(merged))


DEFAULT_TOKEN_LIFETIME = 60.0


@dataclass(frozen=True, repr=False)
class Token:
    token: str
    expires_at: float | None
    refresh_token: str | None = None

    def __repr__(self) -> str:
        return (
            f"Token(token={REDACTED!r}, expires_at={self.expires_at!r}, "
            f"refresh_token={(REDACTED if self.refresh_token else None)!r})"
        )

    __str__ = __repr__

    def valid_at(self, now: float, margin: float = 0.0) -> bool:
        return self.expires_at is None or now + margin < self.expires_at


def parse_token_response(body: bytes, now: float) -> Token:
    """A token server's JSON answer (GET or OAuth2 POST). ``access_token`` wins over
    ``token``; ``expires_in`` missing/invalid/≤0 means the spec's default of 60 s; the expiry
    counts from ``now`` (``issued_at`` is ignored, as containerd does: clocks differ)."""
    try:
        data = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise PyctlError(
            "authorization server returned an invalid token response (not JSON)"
        ) from None
    if not isinstance(data, dict):
        raise PyctlError("authorization server returned an invalid token response (not an object)")
    token: str | None = None
    for name in ("access_token", "token"):
        value = data.get(name)
        if isinstance(value, str) and value:
            token = value
            break
    if token is None:
        raise PyctlError("authorization server did not include a token in the response")
    if not token.isascii() or any(c < " " or c == "\x7f" for c in token):
        # it could not be sent in a header, and the error saying so would show it
        raise PyctlError(
            "authorization server returned a token with control or non-ASCII characters"
        )
    expires_in = data.get("expires_in")
    lifetime = DEFAULT_TOKEN_LIFETIME
    if (
        isinstance(expires_in, int | float)
        and not isinstance(expires_in, bool)
        and 0 < expires_in < float("inf")
    ):
        lifetime = float(expires_in)
    refresh = data.get("refresh_token")
    return Token(
        token=token,
        expires_at=now + lifetime,
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
    )


TokenKey = tuple[str, str, Scope]  # realm, service, scopes


class TokenCache:
    """The bearer tokens of one run, by realm, service and scope set."""

    def __init__(self) -> None:
        self._tokens: dict[TokenKey, Token] = {}
        self._fetching: dict[TokenKey, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, key: TokenKey, fetch: Callable[[], Token]) -> str:
        """The cached token for ``key`` while it is valid, else a new one from ``fetch``: one
        fetch per key at a time, other keys alongside."""
        with self._lock:
            fetching = self._fetching.setdefault(key, threading.Lock())
        with fetching:
            with self._lock:
                token = self._tokens.get(key)
            if token is None or not token.valid_at(time.time(), EXPIRY_MARGIN):
                token = fetch()
                with self._lock:
                    self._tokens[key] = token
            return token.token

    def forget(self, key: TokenKey, value: str) -> None:
        """The registry refused token ``value``: fetch another one next time."""
        with self._lock:
            token = self._tokens.get(key)
            if token is not None and token.token == value:
                del self._tokens[key]


SendFn = Callable[..., Response]


def fetch_token(
    send: SendFn,
    host: RegistryHost,
    challenge: Challenge,
    cred: Credential | None,
    scopes: Scope,
    *,
    ref_host: str,
    log: Callable[[str], None],
) -> Token:
    """A token for ``scopes`` from the realm of ``challenge`` (reached with ``host``'s TLS
    settings and headers): the OAuth2 POST with the credentials (password or refresh token)
    first, the GET with Basic auth (or anonymous) when the server does not take that."""
    realm = challenge.realm
    if realm is None or not _usable_url(realm):
        raise RegistryError(
            f"registry {host.host} sent a bearer challenge without a usable realm "
            f"({short(repr(realm))})"
        )
    service = challenge.service
    common = {"retry": False, "peer": "token server", "limit": MAX_TOKEN_ANSWER}
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
        log(f"http POST {realm} (oauth2 token, {grant} grant) scopes={' '.join(scopes)}")
        data = urlencode(form).encode()
        resp = send(
            "POST",
            host,
            realm,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            body=lambda: data,
            **common,
        )
        if resp.status_code == 200:
            return parse_token_response(resp.content or b"", time.time())
        fallback = resp.status_code in (400, 401, 404) or (
            resp.status_code == 405 and bool(cred.username)
        )
        if not fallback:
            raise _token_error(resp, ref_host)
    # GET with Basic (or anonymous).
    params: list[tuple[str, str]] = []
    if service:
        params.append(("service", service))
    params.extend(("scope", s) for s in scopes)
    headers = {}
    if cred is not None and cred.secret and cred.username and not cred.identity_token:
        headers["Authorization"] = cred.basic_authorization()
    sep = "&" if "?" in realm else "?"
    url = realm + (sep + urlencode(params) if params else "")
    log(f"http GET {url} (token{' with credentials' if headers else ', anonymous'})")
    resp = send("GET", host, url, headers=headers, **common)
    if resp.status_code != 200:
        raise _token_error(resp, ref_host)
    return parse_token_response(resp.content or b"", time.time())


def _token_error(resp: Response, ref_host: str) -> RegistryError:
    if resp.status_code == 401:
        return RegistryError(
            f"unauthorized: authentication required for {ref_host} "
            f"(the token server refused the credentials; run pyctl login {ref_host})",
            401,
            "UNAUTHORIZED",
        )
    err = resp.error()
    return RegistryError(f"token server: {err}", err.status, err.code)


def _usable_url(url: str) -> bool:
    """An absolute http(s) URL naming a host (a token realm, before anything is sent)."""
    if not url.startswith(("http://", "https://")):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (validates the port)
    except ValueError:
        return False
    return bool(parts.hostname) and not any(c in url for c in "\x00\r\n\t ")
