"""Certificates and keys as containerd loads them, read with ``cryptography``.

containerd reads a ``ca`` file with Go's ``AppendCertsFromPEM`` (every PEM CERTIFICATE block
that parses; none is "unable to load CA cert") and a client pair with ``tls.X509KeyPair`` (the
first certificate, the first PEM private key, which must belong to it). It loads the files of
every endpoint of a registry before it sends a request, so one bad file fails every pull of
that registry (``ConfigureHosts`` returns the error). ``cryptography`` is imported only here,
only when a file is checked.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pyctl.registry.lint.findings import Report

if TYPE_CHECKING:
    from cryptography.x509 import Certificate

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
_PEM_KEY = re.compile(rb"-----BEGIN ([A-Z ]*PRIVATE KEY)-----.+?-----END \1-----", re.S)


def check_ca(r: Report, ca: str, file: str, line: int | None, label: str) -> None:
    """The CA file ``ca``, named at ``file:line`` by ``label`` (``ca``, ``[host."…"] ca``)."""
    pulls = f"containerd fails every pull from {r.host}"
    data = _read(
        r, ca, file, line, label, pulls, f"put the registry's CA certificate (PEM) at {ca}"
    )
    if data is None:
        return
    certs = pem_certificates(data)
    if not certs:
        fix = (
            f"convert it: openssl x509 -inform der -in {ca} -out {ca}.pem, and name that"
            if is_der_certificate(data)
            else "replace it with the registry CA's certificate in PEM form "
            "(-----BEGIN CERTIFICATE-----)"
        )
        r.fail(file, line, f"{label} {ca} holds no PEM certificate: {pulls}", fix)
        return
    problems = [p for p in map(validity, certs) if p]
    if problems and len(problems) == len(certs):
        text = f"{label} {ca}: {problems[0]}: no server certificate verifies through it"
        r.fail(file, line, text, f"replace {ca} with the CA's current certificate")
    elif problems:
        text = f"{label} {ca}: {problems[0]} (another certificate in it is valid)"
        r.warn(file, line, text, f"remove the stale certificate from {ca}")
    else:
        more = f" and {len(certs) - 1} more" if len(certs) > 1 else ""
        r.ok(file, line, f"{label} {ca}: {describe(certs[0])}{more}")


def check_client(r: Report, cert: str, key: str, file: str, line: int | None, label: str) -> None:
    """The client certificate ``cert`` with its key ``key`` ("": in the same file)."""
    pulls = f"containerd fails every pull from {r.host}"
    data = _read(r, cert, file, line, label, pulls, f"put the client certificate at {cert}")
    if data is None:
        return
    certs = pem_certificates(data)
    if not certs:
        text = f"{label} {cert} holds no PEM certificate: {pulls}"
        r.fail(file, line, text, "name the client certificate in PEM form")
        return
    key_data = data
    if key:
        read = _read(r, key, file, line, f"{label} key", pulls, f"put the client key at {key}")
        if read is None:
            return
        key_data = read
    where = key or cert
    try:
        matches = key_matches(certs[0], key_data)
    except ValueError as exc:
        fix = (
            f"put the certificate's unencrypted PEM key at {key}"
            if key
            else f'name its key too: client = [["{cert}", "KEY"]]'
        )
        r.fail(file, line, f"{label} {cert}: {exc} in {where}: {pulls}", fix)
        return
    if not matches:
        text = (
            f"{label} {cert}: the key in {where} does not belong to this certificate: {pulls} "
            '("tls: private key does not match public key")'
        )
        r.fail(file, line, text, f"pair {cert} with the key it was issued for")
        return
    problem = validity(certs[0])
    if problem:
        text = f"{label} {cert}: client {problem}: the registry refuses it"
        r.fail(file, line, text, f"renew the client certificate {cert}")
        return
    r.ok(file, line, f"{label} {cert}: client {describe(certs[0])}, key {where}")


def _read(
    r: Report, path: str, file: str, line: int | None, label: str, pulls: str, fix: str
) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        r.fail(file, line, f"{label} {path} does not exist: {pulls}", fix + ", or fix the path")
    except OSError as exc:
        text = f"{label} {path} cannot be read ({exc.strerror}): {pulls}"
        r.fail(file, line, text, f"make {path} a file root can read")
    return None


def pem_certificates(data: bytes) -> list[Certificate]:
    """The certificates Go's ``AppendCertsFromPEM`` takes from ``data``: every PEM
    CERTIFICATE block that parses."""
    from cryptography import x509

    out = []
    for block in _PEM_CERT.findall(data):
        try:
            out.append(x509.load_pem_x509_certificate(block))
        except ValueError:
            continue
    return out


def is_der_certificate(data: bytes) -> bool:
    from cryptography import x509

    try:
        x509.load_der_x509_certificate(data)
    except ValueError:
        return False
    return True


def key_matches(cert: Certificate, key_pem: bytes) -> bool:
    """Whether the first PEM private key in ``key_pem`` belongs to ``cert`` (Go's
    ``tls.X509KeyPair``); ValueError says why there is no key to compare."""
    from cryptography.hazmat.primitives import serialization

    m = _PEM_KEY.search(key_pem)
    if m is None:
        raise ValueError("no PEM private key")
    try:
        key = serialization.load_pem_private_key(m.group(0), password=None)
    except TypeError:
        raise ValueError("the private key is encrypted (containerd cannot use it)") from None
    except ValueError as exc:
        raise ValueError(f"the private key does not parse ({exc})") from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return bool(key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki))


def validity(cert: Certificate, now: datetime | None = None) -> str:
    """ "" when ``cert`` is valid now, else what is wrong with its dates."""
    now = now or datetime.now(UTC)
    subject = cert.subject.rfc4514_string() or "(no subject)"
    if cert.not_valid_after_utc < now:
        return f"certificate {subject} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    if cert.not_valid_before_utc > now:
        when = f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M}"
        return f"certificate {subject} is not valid before {when} UTC (is the clock right?)"
    return ""


def describe(cert: Certificate) -> str:
    subject = cert.subject.rfc4514_string() or "(no subject)"
    return f"certificate {subject}, valid until {cert.not_valid_after_utc:%Y-%m-%d}"
