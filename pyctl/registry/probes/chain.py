"""The certificate chain a registry presents, read with ``cryptography``: what each certificate
says (subject, issuer, names, validity), whether it names the host, which CA signed it, and
which CA file on this node would verify it.

The verdict on a chain is OpenSSL's, in a handshake with the pull's own TLS context
(:mod:`pyctl.registry.probes.tls`); what is here explains it and finds the fix. CA files are
tried against the presented chain offline: a file verifies it when a certificate in it is a
valid CA certificate whose key signed a certificate of the chain.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pyctl.registry.hosts.model import HOSTS_FILE, RegistryHost
from pyctl.registry.lint.certs import pem_certificates, validity
from pyctl.results.check import PresentedCertificate

if TYPE_CHECKING:
    from cryptography.x509 import Certificate

CA_SUFFIXES = (".crt", ".pem")
MAX_CA_FILES = 200  # candidate files read at most
MAX_CA_FILE = 1 << 20  # bytes of one candidate file


def parse(ders: Sequence[bytes]) -> list[Certificate]:
    """The presented chain (DER, leaf first), the certificates that parse."""
    from cryptography import x509

    out = []
    for der in ders:
        try:
            out.append(x509.load_der_x509_certificate(der))
        except ValueError:
            continue
    return out


def names(cert: Certificate) -> tuple[str, ...]:
    """The subjectAltName DNS names and IP addresses, as written."""
    from cryptography import x509

    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    dns = [str(n) for n in ext.get_values_for_type(x509.DNSName)]
    ips = [str(n) for n in ext.get_values_for_type(x509.IPAddress)]
    return (*dns, *ips)


def summary(cert: Certificate) -> PresentedCertificate:
    from cryptography.hazmat.primitives.serialization import Encoding

    return PresentedCertificate(
        subject=subject(cert),
        issuer=cert.issuer.rfc4514_string() or "(no issuer)",
        names=names(cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        sha256=hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest(),
    )


def subject(cert: Certificate) -> str:
    return cert.subject.rfc4514_string() or "(no subject)"


def describe(chain: Sequence[Certificate]) -> str:
    """One line: the leaf (names, validity, issuer), then the certificates above it."""
    leaf = chain[0]
    shown = names(leaf)
    sans = f"names {', '.join(shown)}" if shown else "no subjectAltName"
    text = (
        f"{subject(leaf)} ({sans}), valid {leaf.not_valid_before_utc:%Y-%m-%d} to "
        f"{leaf.not_valid_after_utc:%Y-%m-%d}, issued by {leaf.issuer.rfc4514_string()}"
    )
    for cert in chain[1:]:
        text += f"; then {subject(cert)}, issued by {cert.issuer.rfc4514_string()}"
    return text


def expired(chain: Sequence[Certificate], now: datetime | None = None) -> str:
    """What is wrong with the dates of the chain's certificates ("" when nothing is)."""
    now = now or datetime.now(UTC)
    return next((p for p in (validity(c, now) for c in chain) if p), "")


def matches(cert: Certificate, host: str) -> bool | None:
    """Whether ``cert`` names ``host`` (an address or a DNS name) in its subjectAltName, as Go's
    crypto/x509 (containerd) and OpenSSL check it: one leftmost ``*`` label for a DNS name,
    exact addresses. None: it has no subjectAltName (Go then rejects it whatever its CN)."""
    from cryptography import x509

    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        return any(ip == address for ip in ext.get_values_for_type(x509.IPAddress))
    wanted = host.lower().rstrip(".")
    for name in ext.get_values_for_type(x509.DNSName):
        pattern = name.lower().rstrip(".")
        if pattern == wanted:
            return True
        if pattern.startswith("*.") and "." in wanted:
            head, _, rest = wanted.partition(".")
            if head and rest == pattern[2:]:
                return True
    return False


def signer(chain: Sequence[Certificate], cas: Iterable[Certificate]) -> Certificate | None:
    """The certificate of ``cas`` that signed a certificate of ``chain`` (or is one of them),
    when it is a CA certificate valid now."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature

    for ca in cas:
        if validity(ca):
            continue
        try:
            constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
            if not constraints.ca:
                continue
        except x509.ExtensionNotFound:
            pass
        for cert in chain:
            if cert == ca:
                return ca
            try:
                cert.verify_directly_issued_by(ca)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return ca
    return None


def read_cas(path: str) -> list[Certificate]:
    """The certificates of a CA file ([] when it cannot be read or holds none)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_CA_FILE + 1)
    except OSError:
        return []
    return pem_certificates(data) if len(data) <= MAX_CA_FILE else []


def verified_by(chain: Sequence[Certificate], files: Iterable[str]) -> str:
    """The first of ``files`` that verifies ``chain`` ("" when none does)."""
    for path in files:
        if signer(chain, read_cas(path)) is not None:
            return path
    return ""


def candidate_files(
    entry: RegistryHost, endpoints: Sequence[RegistryHost], dirs: Sequence[str]
) -> list[str]:
    """CA files worth trying against a chain that did not verify, nearest first: those beside
    ``entry``'s hosts.toml (or in its certs.d directory), the ``ca`` of the registry's other
    endpoints, then every ``*.crt``/``*.pem`` in the hosts directories and their entries."""
    near: list[str] = []
    source = entry.source
    if source.endswith(os.sep + HOSTS_FILE):
        near.append(os.path.dirname(source))
    elif os.path.isdir(source):
        near.append(source)
    found: list[str] = []
    for directory in near:
        found += _ca_files(directory)
    for other in endpoints:
        found += list(other.ca)
    for root in dirs:
        found += _ca_files(root)
        try:
            entries = sorted(os.listdir(root))
        except OSError:
            continue
        for name in entries:
            found += _ca_files(os.path.join(root, name))
    unique = list(dict.fromkeys(f for f in found if f not in entry.ca))
    return unique[:MAX_CA_FILES]


def _ca_files(directory: str) -> list[str]:
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    paths = (os.path.join(directory, n) for n in names if n.endswith(CA_SUFFIXES))
    return [p for p in paths if os.path.isfile(p)]
