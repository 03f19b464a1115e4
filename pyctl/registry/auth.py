"""Authentication to a registry's hosts, as a flow per request (httpx's ``Auth`` flows): a
request is sent as the host's last challenge says (Basic with the credentials, or a Bearer
token for the request's own scope), and a 401 answer may set up or refresh that and have the
request sent again.

The scope is an argument of each request (:meth:`Authenticator.flow`): a cross-repository
mount asks for pull on its source repository, and no other request sees that scope. What is
shared between the requests of a run is only what the hosts said: the challenge of each host
(scheme, realm, service), the credentials for it, and the tokens (:mod:`pyctl.registry.tokens`,
cached by scope).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from pyctl.errors import RegistryError
from pyctl.registry.challenge import Challenge, parse_www_authenticate
from pyctl.registry.credentials import Credential
from pyctl.registry.hosts.model import (
    RegistryHost,
    endpoint_credential,
    registry_endpoint_hosts,
)
from pyctl.registry.hosts.provenance import Provenance
from pyctl.registry.tokens import (
    Scope,
    SendFn,
    Token,
    TokenCache,
    TokenKey,
    fetch_token,
    merge_scopes,
)
from pyctl.registry.transport import Response

MAX_AUTH_RETRIES = 2  # 401s a request may answer by setting up auth anew


class Authenticator:
    """Who pyctl is to the hosts of registry ``ref_host`` during one run.

    ``keychain`` gives the credentials stored for a host; the registry's own hosts (its host,
    its hosts.toml ``server``'s, whatever entry names them) use the registry's credentials, a
    mirror only ever those stored for the mirror itself. ``send`` sends token requests.
    """

    def __init__(
        self,
        ref_host: str,
        hosts: Sequence[RegistryHost],
        keychain: Callable[[str], Credential | None],
        send: SendFn,
        provenance: Provenance,
        *,
        insecure: bool = False,
        log: Callable[[str], None] = lambda _text: None,
    ) -> None:
        self.ref_host = ref_host
        self.hosts = list(hosts)
        self.keychain = keychain
        self.send = send
        self.provenance = provenance
        self.insecure = insecure
        self.log = log
        self.tokens = TokenCache()
        self._own = registry_endpoint_hosts(ref_host, hosts)
        self._challenges: dict[str, Challenge] = {}  # by host[:port]: the last usable one
        self._creds: dict[str, Credential | None] = {}
        self._asked: dict[tuple[str, Scope], Scope] = {}  # scopes a host wanted besides ours
        self._lock = threading.Lock()

    def flow(self, host: RegistryHost, scope: Scope) -> RequestAuth:
        """The auth of one request to ``host`` for ``scope``."""
        return RequestAuth(self, host, scope)

    def credential(self, netloc: str) -> Credential | None:
        with self._lock:
            if netloc in self._creds:
                return self._creds[netloc]
        cred = endpoint_credential(self.ref_host, netloc, self._own, self.keychain)
        with self._lock:
            self._creds[netloc] = cred
        return cred

    def login_host(self, netloc: str) -> str:
        """The registry whose stored credentials requests to ``netloc`` use: the image's
        registry for its own hosts, the mirror itself otherwise (``pyctl login`` it)."""
        return self.ref_host if netloc in self._own else netloc

    def challenge(self, netloc: str) -> Challenge | None:
        with self._lock:
            return self._challenges.get(netloc)

    def learn(self, netloc: str, challenge: Challenge, *, replace: bool) -> None:
        with self._lock:
            if replace or netloc not in self._challenges:
                self._challenges[netloc] = challenge

    def asked(self, netloc: str, scope: Scope) -> Scope:
        with self._lock:
            return self._asked.get((netloc, scope), ())

    def remember_asked(self, netloc: str, scope: Scope, extra: Scope) -> None:
        with self._lock:
            self._asked[(netloc, scope)] = extra

    def entry(self, netloc: str) -> RegistryHost | None:
        return next((h for h in self.hosts if h.host == netloc), None)


class RequestAuth:
    """The auth flow of one request (see :class:`pyctl.registry.retry.AuthFlow`)."""

    def __init__(self, auth: Authenticator, host: RegistryHost, scope: Scope) -> None:
        self.auth = auth
        self.host = host
        self.scope = scope
        # Scopes this host asked for besides ours in an earlier 401 (a HEAD may want only
        # pull where we asked for pull,push): asked for again, so the next request goes
        # through at once.
        self.extra = auth.asked(host.host, scope)
        self.retries = 0
        self._sent: tuple[TokenKey, str] | None = None  # the token the last try carried

    def authorization(self, url: str) -> str | None:
        netloc = urlsplit(url).netloc
        challenge = self.auth.challenge(netloc)
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            cred = self.auth.credential(netloc)
            if cred is None or cred.identity_token:
                return None
            # Plain HTTP only where the operator allowed it: --insecure-registry, an
            # http:// host entry, or the HTTPS-then-HTTP fallback (http:// entries with TLS
            # settings, and loopback registries, which docker treats as insecure too).
            plain_ok = self.auth.insecure or self.host.scheme == "http" or self.host.http_fallback
            if url.startswith("http://") and not plain_ok:
                raise RegistryError(
                    f"refusing to send credentials to {netloc} over plain HTTP "
                    "(use --insecure-registry, or an http:// host in its hosts.toml)"
                )
            return cred.basic_authorization()
        if challenge.scheme == "bearer":
            scopes = merge_scopes(self.scope, self.extra)
            key: TokenKey = (challenge.realm or "", challenge.service or "", scopes)
            cred = self.auth.credential(netloc)

            def fetch() -> Token:
                return fetch_token(
                    self.auth.send,
                    self.host,
                    challenge,
                    cred,
                    scopes,
                    ref_host=self.auth.login_host(netloc),
                    log=self.auth.log,
                )

            token = self.auth.tokens.get(key, fetch)
            self._sent = (key, token)
            return "Bearer " + token
        return None

    def unauthorized(self, resp: Response) -> bool:
        """Set up auth from a 401; False when sending the request again cannot help.

        A 401 to a request sent without credentials (possibly before another request set up
        auth for this host) retries with the host's challenge. A 401 to a request that carried
        a token drops that token and asks again for the scopes the challenge names as well
        (the registry may want more than we thought); a refused password, or a token for
        every scope the registry names refused as insufficient, is final."""
        if self.retries >= MAX_AUTH_RETRIES:
            return False
        self.retries += 1  # every answer to a 401 spends one: a registry cannot loop us
        netloc = urlsplit(resp.url).netloc
        sent_auth = "Authorization" in resp.request.headers
        usable = [c for c in challenges(resp) if c.scheme in ("bearer", "basic")]
        if not usable:
            return not sent_auth and self.auth.challenge(netloc) is not None
        chosen = usable[0]
        if sent_auth and chosen.scheme == "basic":
            return False  # the password was refused: sending it again will not help
        self.auth.learn(netloc, chosen, replace=sent_auth)
        if chosen.scheme == "bearer":
            asked = set(self.scope) | set(self.extra)
            named = set(chosen.scopes)
            if sent_auth and chosen.error == "insufficient_scope" and named and named <= asked:
                return False  # a token for all it wants was refused: access is denied
            wanted = merge_scopes(self.extra, chosen.scopes)
            if sent_auth and self._sent is not None:
                self.auth.tokens.forget(*self._sent)
            if wanted != self.extra:
                self.extra = wanted
                self.auth.remember_asked(self.host.host, self.scope, wanted)
        return not (chosen.scheme == "basic" and self.auth.credential(netloc) is None)

    def hint(self, resp: Response) -> str:
        """What to tell the operator about a final 401 (and which configuration gave the
        endpoint)."""
        netloc = urlsplit(resp.url).netloc
        cred = self.auth.credential(netloc)
        if cred is not None and any(c.error == "insufficient_scope" for c in challenges(resp)):
            return "denied"
        entry = self.auth.entry(netloc)
        where = f"; {self.auth.provenance.where(entry)}" if entry is not None else ""
        ref = self.auth.login_host(netloc)
        if cred is None:
            return f"no credentials for {ref}: run pyctl login {ref}{where}"
        return f"the credentials for {ref} were refused: run pyctl login {ref}{where}"


def challenges(resp: Response) -> list[Challenge]:
    """The ``WWW-Authenticate`` challenges of an answer."""
    return parse_www_authenticate(list(resp.headers.getlist("WWW-Authenticate")))
