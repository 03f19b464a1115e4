"""The online half of ``pyctl hosts --check``: each endpoint of a registry probed in the order a
pull tries it, one step after the other, each within its time; a step that fails ends the
endpoint's probes.

=============  =================================================  ========================
step           what                                               module
=============  =================================================  ========================
dns            the host name resolves                             :mod:`.network`
connect        a TCP connection opens (and how long it took)      :mod:`.network`
tls            the handshake; the chain the server presents;      :mod:`.tls`
               client certificates (https endpoints)
verify         the chain verifies: configured CA, system store    :mod:`.tls`, :mod:`.chain`
hostname       the certificate names the host                     :mod:`.tls`, :mod:`.chain`
v2             ``GET /v2/``: status and auth challenge             :mod:`.auth`
token          the token realm answers (Bearer)                   :mod:`.auth`
credentials    the credentials a pull sends, and their source     :mod:`.auth`
auth           accepted (for ``repository:NAME:pull``)            :mod:`.auth`, :mod:`.manifest`
manifest       the manifest of REF is there                       :mod:`.manifest`
platform       with a manifest for this machine                   :mod:`.manifest`
=============  =================================================  ========================

Every request goes through the registry client's own code: the endpoints as a pull resolves
them (:meth:`~pyctl.registry.connect.RegistryConfig.hosts`), TLS contexts from
:mod:`pyctl.registry.transport`, the sender, auth flow and keychains of a
:class:`~pyctl.registry.distribution.Repository` (so the credential rule is the pull's).
Nothing is written anywhere.
"""

from __future__ import annotations

from pyctl.reference import Reference
from pyctl.registry.connect import RegistryConfig
from pyctl.registry.hosts.model import CAPABILITIES, RegistryHost, registry_endpoint_hosts
from pyctl.registry.probes import auth, manifest, network, tls
from pyctl.registry.probes.steps import Checklist
from pyctl.registry.probes.target import Target, url
from pyctl.results.check import EndpointCheck, PresentedCertificate

__all__ = ["probe_endpoints"]


def probe_endpoints(
    rc: RegistryConfig, registry: str, reference: Reference | None, timeout: float
) -> list[EndpointCheck]:
    """Probe each endpoint of ``registry`` a pull of ``reference`` (or, None, any pull from
    it) tries, in that order. A configuration pyctl cannot read raises its ConfigError."""
    endpoints = rc.hosts(registry)
    repo = rc.repository(
        registry,
        reference.path if reference is not None else "",
        endpoints=endpoints,
        pool=2,
        timeout=timeout,
        retry=False,
    )
    t = Target(rc, registry, reference, endpoints, repo, timeout)
    own = registry_endpoint_hosts(registry, endpoints)
    try:
        return [_probe(t, h, own) for h in endpoints if h.has("pull")]
    finally:
        repo.close()


def _probe(t: Target, h: RegistryHost, own: frozenset[str]) -> EndpointCheck:
    c = Checklist(t.timeout)
    chain: tuple[PresentedCertificate, ...] = ()
    usable = False
    addresses = network.lookup(c, t, h)
    address = network.connect(c, h, addresses) if addresses else None
    if address is not None:
        go_on = True
        if h.scheme == "https":
            outcome = tls.probe(c, t, h, address)
            chain, go_on = outcome.chain, outcome.go_on
        else:
            c.ok("tls", f"none: plain HTTP, as {t.provenance.applied(h)} configures it")
        usable = go_on and _api(c, t, h)
    return EndpointCheck(
        url=url(h),
        role="registry" if h.host in own else "mirror",
        capabilities=tuple(c for c in CAPABILITIES if h.has(c)),
        config=t.provenance.applied(h),
        steps=tuple(c.steps),
        usable=usable and not c.failed,
        chain=chain,
    )


def _api(c: Checklist, t: Target, h: RegistryHost) -> bool:
    """The HTTP probes; True when a pull could use ``h`` for REF (or, without one, when
    ``/v2/`` answers with the credentials)."""
    go_on, challenge = auth.v2(c, t, h)
    if not go_on:
        return False
    bearer = challenge is not None and challenge.scheme == "bearer"
    if bearer and challenge is not None and not auth.token(c, t, h, challenge):
        return False
    if not auth.credentials(c, t, h):
        return False
    if t.reference is None:
        return auth.ping(c, t, h)
    if not t.what.startswith("sha256:") and not h.has("resolve"):
        c.ok(
            "manifest",
            f"not asked: without the resolve capability this endpoint serves content by digest "
            f"once another one resolved {t.what}",
        )
        return False
    desc = manifest.resolve(c, t, h)
    return desc is not None and manifest.platform(c, t, h, desc)
