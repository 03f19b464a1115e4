"""The TLS probes of an https endpoint:

* ``tls``: the handshake, and the chain the server presents (subject, names, validity,
  issuer); a client certificate that cannot be loaded, or that the registry refuses with a TLS
  alert (it may send that alert only once the handshake is over, so a ``GET /v2/`` is sent and
  its first bytes read);
* ``verify``: whether the chain verifies against the configured CA and the system store — and
  when it does not, the fix for the configuration that applied, naming the CA file on this
  node that would verify it when there is one (:mod:`.chain` tries them);
* ``hostname``: whether the certificate names the host.

The handshakes use the pull's own TLS context (:func:`pyctl.registry.transport.ssl_context`,
from the same configuration); OpenSSL's answer in it is the verdict. A second handshake that
verifies nothing reads the chain when the first one refused it.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pyctl.errors import PyctlError
from pyctl.registry.hosts.golang import is_localhost
from pyctl.registry.hosts.model import RegistryHost
from pyctl.registry.lint.certs import check_client
from pyctl.registry.lint.findings import Report
from pyctl.registry.probes import chain as chains
from pyctl.registry.probes.network import Address
from pyctl.registry.probes.steps import Checklist, TimedOut
from pyctl.registry.probes.target import Target, hostname, url
from pyctl.registry.retry import USER_AGENT
from pyctl.registry.transport import (
    Failure,
    base_context,
    classify,
    describe,
    load_cas,
    load_client_certs,
    ssl_context,
)
from pyctl.results.check import PresentedCertificate

if TYPE_CHECKING:
    from cryptography.x509 import Certificate

# OpenSSL X509_V_ERR_* codes a verification fails with
DATES = frozenset({9, 10})  # not yet valid, expired
NAME = frozenset({62, 64})  # hostname, IP address mismatch
_ENCODING_DER = 2  # _ssl.ENCODING_DER, for the chain's _ssl.Certificate objects (3.10-3.12)


@dataclass
class Handshake:
    version: str = ""
    chain: list[bytes] = field(default_factory=list)  # DER, leaf first, as presented
    error: BaseException | None = None  # the handshake failed
    refused: BaseException | None = None  # it succeeded, then the server broke off
    answered: bool = False  # the server answered the request sent after it


@dataclass
class Outcome:
    go_on: bool  # the next probes can run (TLS works, or plain HTTP is allowed)
    chain: tuple[PresentedCertificate, ...] = ()


def probe(c: Checklist, t: Target, h: RegistryHost, address: Address) -> Outcome:
    """The ``tls``, ``verify`` and ``hostname`` steps of ``h``, over ``address``."""
    verifying = not (t.insecure or bool(h.skip_verify))
    bad_cas = [ca for ca in h.ca if _load_error(load_cas, h._replace(ca=(ca,)))]
    client_error = _load_error(load_client_certs, h)
    usable = h._replace(ca=tuple(ca for ca in h.ca if ca not in bad_cas))
    if client_error:
        usable = usable._replace(client=())
    pull_context = ssl_context(usable, t.insecure)  # what a pull would use, as far as it loads
    request = (
        f"GET {h.path}/ HTTP/1.1\r\nHost: {h.host}\r\nUser-Agent: {USER_AGENT}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()

    def shake() -> tuple[Handshake, Handshake | None]:
        first = handshake(address, hostname(h), request, pull_context, c.timeout)
        if not verifying or first.error is None:
            return first, None
        if classify(first.error).kind is not Failure.UNVERIFIED:
            return first, None
        # refused by the verification: look at the chain without verifying it (and send
        # nothing over that connection)
        look = ssl_context(usable._replace(skip_verify=True), False)
        return first, handshake(address, hostname(h), None, look, c.timeout)

    try:
        first, second = c.run(shake)
    except TimedOut:
        c.timed_out(
            "tls",
            f"to the TLS handshake: {h.host} took the connection and said nothing",
            f"is {h.host} a registry, and is it up?",
        )
        return Outcome(False)
    seen = second or first
    if seen.error is not None:
        return Outcome(_no_handshake(c, t, h, seen.error))
    chain = chains.parse(seen.chain)
    if not chain:
        c.fail("tls", f"{h.host} presented no certificate")
        return Outcome(False)
    verdict = first.error if second is not None else None
    code = getattr(verdict, "verify_code", 0) if verdict is not None else 0
    _tls_step(c, t, h, seen, chain, client_error, verifying, code)
    if not verifying:
        _unverified(c, t, h)
    else:
        _verify_step(c, t, h, chain, bad_cas, verdict, code)
        _hostname_step(c, t, h, chain, code)
    return Outcome(not c.failed, tuple(chains.summary(x) for x in chain))


def handshake(
    address: Address, name: str, request: bytes | None, ctx: ssl.SSLContext, timeout: float
) -> Handshake:
    """A TLS handshake with ``address`` (``name`` for SNI and the name check), then
    ``request`` (if any) and the first bytes of the answer: a registry that refuses the client
    certificate may say so only then (TLS 1.3)."""
    family, sockaddr = address
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(sockaddr)
        tls = ctx.wrap_socket(sock, server_hostname=name)
    except OSError as exc:  # ssl.SSLError is one
        sock.close()
        return Handshake(error=exc)
    with tls:
        hs = Handshake(version=tls.version() or "", chain=_presented(tls))
        if request is None:
            return hs
        try:
            tls.sendall(request)
            hs.answered = bool(tls.recv(16))
        except OSError as exc:
            hs.refused = exc
        if not hs.answered and hs.refused is None:
            hs.refused = ConnectionAbortedError("the server closed the connection")
    return hs


def _presented(tls: ssl.SSLSocket) -> list[bytes]:
    """The chain the server sent (DER, leaf first): ``get_unverified_chain`` (Python 3.13; in
    3.10–3.12 a method of the underlying ``_ssl`` object), else the leaf alone."""
    get: Any = getattr(tls, "get_unverified_chain", None)
    if get is None:
        get = getattr(getattr(tls, "_sslobj", None), "get_unverified_chain", None)
    if get is not None:
        try:
            certs = get() or []
            return [c if isinstance(c, bytes) else c.public_bytes(_ENCODING_DER) for c in certs]
        except (AttributeError, ValueError, ssl.SSLError):
            pass
    leaf = tls.getpeercert(binary_form=True)
    return [leaf] if leaf else []


def _load_error(load: Any, h: RegistryHost) -> str:
    """What loading ``h``'s CA files or client certificates (as a pull does) says ("": fine)."""
    try:
        load(base_context(verify=False), h)
    except PyctlError as exc:
        return exc.message
    return ""


def _no_handshake(c: Checklist, t: Target, h: RegistryHost, error: BaseException) -> bool:
    """The ``tls`` step of a handshake that failed; True when a pull goes on over plain HTTP."""
    failure = classify(error)
    if failure.kind is Failure.NOT_TLS:
        if h.http_fallback or t.insecure:
            c.ok("tls", f"{h.host} does not speak TLS: a pull uses plain HTTP ({_why_http(t, h)})")
            return True
        c.fail(
            "tls",
            f"{h.host} does not speak TLS (a plain HTTP registry?)",
            f'write [host."http://{h.host}"] in its hosts.toml, or use --insecure-registry',
        )
        return False
    if failure.kind is Failure.TIMEOUT:
        c.timed_out("tls", f"to the TLS handshake: {h.host} took the connection and said nothing")
        return False
    if failure.kind is Failure.CLIENT_CERT:
        _refused_client(c, t, h, failure.detail)
        return False
    c.fail("tls", describe(error, url(h), h.client))
    return False


def _why_http(t: Target, h: RegistryHost) -> str:
    if t.insecure:
        return "--insecure-registry allows it"
    if h.source == "default" and is_localhost(h.host):
        return "a loopback registry without configuration, as docker and containerd allow"
    return f"allowed: an http:// endpoint in {t.provenance.applied(h)}"


def _tls_step(
    c: Checklist,
    t: Target,
    h: RegistryHost,
    seen: Handshake,
    chain: list[Certificate],
    client_error: str,
    verifying: bool,
    code: int,
) -> None:
    if client_error:
        after = (
            f"{h.host} ends the handshake ({_detail(seen.refused)})"
            if seen.refused is not None
            else f"{h.host} takes the connection (it does not ask for one)"
        )
        c.fail(
            "tls",
            f"{client_error}: every pull from {t.registry} fails before it connects; without "
            f"it, {after}",
            _client_pair_fix(t, h),
        )
        return
    if seen.refused is not None:
        _refused_client(c, t, h, _detail(seen.refused))
        return
    dates = chains.expired(chain)
    if dates or code in DATES:
        problem = dates or "the certificate is outside its validity period"
        if verifying:
            c.fail(
                "tls",
                f"x509: certificate has expired or is not yet valid: {problem}",
                f"renew the certificate of {h.host} (the registry's, not this node's)",
            )
        else:
            c.warn("tls", f"{problem}: not checked ({_why_unverified(t, h)})")
        return
    c.ok("tls", f"{seen.version}: {chains.describe(chain)}")


def _detail(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    failure = classify(exc)
    if failure.detail:
        return failure.detail
    return "it closed the connection"


def _refused_client(c: Checklist, t: Target, h: RegistryHost, detail: str) -> None:
    if not h.client:
        c.fail(
            "tls",
            f"{h.host} ended the handshake ({detail}): it wants a client certificate, and "
            f"{t.provenance.applied(h)} gives none",
            t.provenance.client_fix(h),
        )
        return
    cert = h.client[0][0]
    c.fail(
        "tls",
        f"{h.host} refused the client certificate {cert} ({detail})",
        f"use a client certificate from a CA the registry trusts, still valid (from {h.source})",
    )


def _client_pair_fix(t: Target, h: RegistryHost) -> str:
    """The lint's fix for the first client pair that cannot be loaded."""
    report = Report(t.rc.settings, t.registry)
    for cert, key in h.client:
        check_client(report, cert, key, h.source, None, "client")
        if report.failures():
            return report.findings[-1].fix
    return f"fix the client certificate in {h.source}"


def _why_unverified(t: Target, h: RegistryHost) -> str:
    if t.insecure:
        return "--insecure-registry"
    if is_localhost(h.host):
        return (
            f"{hostname(h)} is a loopback address: containerd and docker do not verify it "
            "unless skip_verify = false is set"
        )
    return f"skip_verify = true in {h.source}"


def _unverified(c: Checklist, t: Target, h: RegistryHost) -> None:
    why = _why_unverified(t, h)
    if not t.insecure and is_localhost(h.host):
        c.ok("verify", f"not verified: {why}")
    else:
        c.warn("verify", f"not verified: {why}")


def _verify_step(
    c: Checklist,
    t: Target,
    h: RegistryHost,
    chain: list[Certificate],
    bad_cas: list[str],
    verdict: BaseException | None,
    code: int,
) -> None:
    leaf, issuer = chains.subject(chain[0]), chain[-1].issuer.rfc4514_string()
    if bad_cas:
        found = _verifying_file(t, h, chain)
        fix = f"put the registry's CA at {bad_cas[0]} in PEM form"
        if found:
            fix = f"{found} verifies {h.host}: copy it to {bad_cas[0]}, or name it in {h.source}"
        message = _load_error(load_cas, h._replace(ca=(bad_cas[0],)))
        c.fail("verify", f"{message}: every pull from {t.registry} fails before it connects", fix)
        return
    configured = chains.verified_by(chain, h.ca)
    if verdict is None or code in DATES | NAME:
        # (OpenSSL stopped at the dates or the name: it had found the CA)
        trust = f"the ca {configured}" if configured else "the system store"
        c.ok("verify", f"{leaf} is signed by {issuer}, trusted through {trust}")
        return
    detail = classify(verdict).detail
    holds = (
        f"neither the system store nor the ca {', '.join(h.ca)} holds it"
        if h.ca
        else "the system store does not hold it and no ca is configured"
    )
    found = _verifying_file(t, h, chain)
    c.fail(
        "verify",
        f"x509: {detail} for {h.host}: {leaf} is signed by {issuer}; {holds}",
        t.provenance.tls_fix(h, found),
    )


def _verifying_file(t: Target, h: RegistryHost, chain: list[Certificate]) -> str:
    files = chains.candidate_files(h, t.endpoints, t.rc.dirs)
    return chains.verified_by(chain, files)


def _hostname_step(
    c: Checklist, t: Target, h: RegistryHost, chain: list[Certificate], code: int
) -> None:
    name = hostname(h)
    names = chains.names(chain[0])
    named = chains.matches(chain[0], name)
    if named is None:
        text = f"{chains.subject(chain[0])} has no subjectAltName"
        if code in NAME:
            c.fail("hostname", f"x509: {text}", f"reissue it with {name} in its subjectAltName")
        else:
            c.warn(
                "hostname",
                f"{text}: pyctl (OpenSSL) accepts its CN, containerd (Go 1.15 and later) does not",
                f"reissue it with {name} in its subjectAltName",
            )
        return
    if named and code not in NAME:
        c.ok("hostname", f"{name} is among the certificate's names")
        return
    c.fail(
        "hostname",
        f"x509: the certificate of {h.host} names {', '.join(names)}, not {name}",
        f"reissue the registry's certificate with {name} in its subjectAltName, or reach it by "
        f"a name it has",
    )
