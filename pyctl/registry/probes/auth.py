"""The API and auth probes of an endpoint, each request sent through the pull's own sender,
auth flow and keychains (:class:`~pyctl.registry.distribution.Repository`):

* ``v2``: ``GET /v2/`` without credentials: its status and auth challenge;
* ``token``: the challenge's token realm answers (Bearer only);
* ``credentials``: the credentials a pull would send there, and where they come from (never
  the secret): the image registry's for its own hosts, the mirror's own for a mirror elsewhere;
* ``auth``: those credentials accepted — with only a registry host, for ``GET /v2/``; for an
  image, for ``repository:NAME:pull`` (:mod:`.manifest` sends that request).
"""

from __future__ import annotations

from urllib.parse import urlencode

from pyctl.errors import PyctlError, RegistryError
from pyctl.registry.auth import challenges
from pyctl.registry.challenge import Challenge
from pyctl.registry.hosts.model import RegistryHost
from pyctl.registry.probes.steps import Checklist, TimedOut
from pyctl.registry.probes.target import Target
from pyctl.registry.tokens import MAX_TOKEN_ANSWER
from pyctl.registry.transport import short


def root(h: RegistryHost) -> str:
    """The endpoint's API root, as login pings it: ``https://host/v2/``."""
    return f"{h.scheme}://{h.host}{h.path}/"


def v2(c: Checklist, t: Target, h: RegistryHost) -> tuple[bool, Challenge | None]:
    """``GET /v2/`` without credentials: (the next probes can run, the usable challenge)."""
    target = root(h)
    try:
        resp = c.run(lambda: t.repo.sender.send("GET", h, target, retry=False))
    except TimedOut:
        c.timed_out("v2", f"to GET {target}", f"is {h.host} a registry, and is it up?")
        return False, None
    except RegistryError as exc:
        c.fail("v2", exc.message)
        return False, None
    status = resp.status_code
    usable = [x for x in challenges(resp) if x.scheme in ("bearer", "basic")]
    shown = f"GET {t.repo.sender.effective(target)}: HTTP {status}"
    if status == 200:
        c.ok("v2", f"{shown}, no authentication asked")
        return True, None
    if status == 401 and usable:
        c.ok("v2", f"{shown}, {describe_challenge(usable[0])}")
        return True, usable[0]
    if status == 401:
        sent = ", ".join(resp.headers.getlist("WWW-Authenticate")) or "none"
        c.fail("v2", f"{shown} without a Basic or Bearer challenge (WWW-Authenticate: {sent})")
        return False, None
    if status == 404:
        c.warn("v2", f"{shown}: not a registry's API root (a pull may still find images there)")
        return True, None
    c.fail("v2", f"{shown}: {resp.error()}")
    return False, None


def describe_challenge(ch: Challenge) -> str:
    if ch.scheme == "basic":
        return "wants Basic credentials"
    service = f", service {ch.service}" if ch.service else ""
    return f"wants a Bearer token from {ch.realm or '(no realm)'}{service}"


def token(c: Checklist, t: Target, h: RegistryHost, ch: Challenge) -> bool:
    """The token realm answers (an anonymous request for no scope)."""
    realm = ch.realm or ""
    query = urlencode({"service": ch.service}) if ch.service else ""
    target = f"{realm}{'&' if '?' in realm else '?'}{query}" if query else realm
    if not realm:
        c.fail("token", f"{h.host} sent a Bearer challenge without a realm")
        return False
    try:
        resp = c.run(
            lambda: t.repo.sender.send(
                "GET", h, target, peer="token server", retry=False, limit=MAX_TOKEN_ANSWER
            )
        )
    except TimedOut:
        c.timed_out("token", f"from the token server {realm}")
        return False
    except RegistryError as exc:
        c.fail("token", exc.message, "the token server must be reachable from this node")
        return False
    status = resp.status_code
    if status >= 500:
        c.fail("token", f"token server {realm}: HTTP {status}: {resp.error()}")
        return False
    what = {200: "an anonymous token", 401: "credentials wanted"}.get(status, resp.reason)
    c.ok("token", f"token server {realm} answers: HTTP {status} ({what})")
    return True


def credentials(c: Checklist, t: Target, h: RegistryHost) -> bool:
    """The credentials a pull would send to ``h``, and their source."""
    login = t.repo.auth.login_host(h.host)
    try:
        cred = c.run(lambda: t.repo.auth.credential(h.host))
    except TimedOut:
        c.timed_out("credentials", f"from the credential helper for {login}")
        return False
    except PyctlError as exc:
        c.fail("credentials", exc.message, f"fix it, or pyctl login {login} again")
        return False
    mirror = (
        f" (a mirror on another host gets only its own credentials, never {t.registry}'s)"
        if login != t.registry
        else ""
    )
    if cred is None:
        c.ok("credentials", f"none stored for {login}: requests go anonymous{mirror}")
    else:
        c.ok("credentials", f"{cred.describe()}, stored for {login}{mirror}")
    return True


def refused(c: Checklist, t: Target, h: RegistryHost, exc: RegistryError, what: str) -> bool:
    """Records the ``auth`` step's FAIL when ``exc`` (an answer to ``what``) is the registry or
    its token server refusing the credentials; True when it was."""
    if exc.status not in (401, 403):
        return False
    login = t.repo.auth.login_host(h.host)
    fix = f"pyctl login {login}"
    if exc.status == 403 or exc.code == "DENIED":
        fix += f" as a user that may {what}"
    c.fail("auth", exc.message, fix)
    return True


def accepted(c: Checklist, t: Target, h: RegistryHost, what: str) -> None:
    """The ``auth`` step went through: who, how."""
    try:
        cred = t.repo.auth.credential(h.host)
    except PyctlError:
        cred = None
    who = cred.describe() if cred is not None else "anonymous"
    challenge = t.repo.auth.challenge(h.host)
    if challenge is None:
        c.ok("auth", f"{what}: no authentication asked")
    elif challenge.scheme == "bearer":
        c.ok("auth", f"{what}: allowed with a token ({who})")
    else:
        c.ok("auth", f"{what}: allowed with Basic credentials ({who})")


def ping(c: Checklist, t: Target, h: RegistryHost) -> bool:
    """With only a registry host: ``GET /v2/`` with the credentials, as login checks them."""
    target = root(h)
    try:
        resp = c.run(lambda: t.repo.request("GET", h, target, retry=False))
    except TimedOut:
        c.timed_out("auth", f"to GET {target} with credentials")
        return False
    except RegistryError as exc:
        if not refused(c, t, h, exc, "log in"):
            c.fail("auth", exc.message)
        return False
    except PyctlError as exc:  # a credential helper that fails
        c.fail("auth", exc.message)
        return False
    if resp.status_code in (401, 403):
        refused(c, t, h, resp.error(), "log in")
        return False
    if resp.status_code >= 400 and resp.status_code != 404:
        c.fail("auth", f"GET {target}: {short(str(resp.error()))}")
        return False
    accepted(c, t, h, f"GET {t.repo.sender.effective(target)}")
    return True
