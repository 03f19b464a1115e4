"""The pure parts of ``hosts --check``'s probes, without a network: each step's time limit, the
chain analysis (names, which CA file signed it), the fix that names a CA file, the verdict."""

from __future__ import annotations

import datetime as dt
import ipaddress
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pyctl.ops.hosts import _verdict, hosts_target
from pyctl.registry.hosts.provenance import HostsLookup, client_fix, tls_fix
from pyctl.registry.hosts.resolve import resolve_hosts
from pyctl.registry.probes import chain
from pyctl.registry.probes.steps import Checklist, TimedOut, within
from pyctl.results import CheckStep, EndpointCheck, Finding, Severity

NOW = dt.datetime.now(dt.UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(
    cn: str, *, expired: bool = False, ca: bool = True
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    end = NOW - dt.timedelta(days=1) if expired else NOW + dt.timedelta(days=30)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=60))
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def make_leaf(
    issuer: x509.Certificate, key: ec.EllipticCurvePrivateKey, names: list[x509.GeneralName] | None
) -> x509.Certificate:
    own = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name("leaf"))
        .issuer_name(issuer.subject)
        .public_key(own.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=10))
    )
    if names is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(key, hashes.SHA256())


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


# --- time limits --------------------------------------------------------------------------------


def test_within_returns_raises_and_ends_at_the_limit() -> None:
    assert within(1, lambda: 42) == 42
    with pytest.raises(ZeroDivisionError):
        within(1, lambda: 1 // 0)
    began = time.monotonic()
    with pytest.raises(TimedOut):
        within(0.2, lambda: time.sleep(30))
    assert time.monotonic() - began < 1.5


def test_checklist_times_each_step() -> None:
    c = Checklist(0.1)
    with pytest.raises(TimedOut):
        c.run(lambda: time.sleep(5))
    c.timed_out("v2", "to GET https://r/v2/")
    c.ok("credentials", "none")
    (timed, done) = c.steps
    assert timed == CheckStep(
        "v2", Severity.FAIL, "no answer within 0.1 s to GET https://r/v2/", "", timed.seconds
    )
    assert 0.1 <= timed.seconds < 1 and done.seconds < 0.1
    assert c.failed


# --- the chain ---------------------------------------------------------------------------------


def test_names_match_as_go_checks_them() -> None:
    ca, key = make_ca("CA")
    leaf = make_leaf(
        ca,
        key,
        [
            x509.DNSName("*.example.com"),
            x509.DNSName("harbor.local"),
            x509.IPAddress(ipaddress.ip_address("10.0.0.5")),
        ],
    )
    assert chain.names(leaf) == ("*.example.com", "harbor.local", "10.0.0.5")
    assert chain.matches(leaf, "harbor.local") is True
    assert chain.matches(leaf, "HARBOR.local.") is True
    assert chain.matches(leaf, "a.example.com") is True
    assert chain.matches(leaf, "a.b.example.com") is False  # one label only
    assert chain.matches(leaf, "example.com") is False
    assert chain.matches(leaf, "10.0.0.5") is True
    assert chain.matches(leaf, "10.0.0.6") is False
    assert chain.matches(make_leaf(ca, key, None), "leaf") is None  # no SAN: Go rejects it


def test_the_ca_file_that_signed_a_chain(tmp_path: Path) -> None:
    ca, key = make_ca("Harbor CA")
    other, _ = make_ca("Other CA")
    old, old_key = make_ca("Old CA", expired=True)
    leaf = make_leaf(ca, key, [x509.DNSName("harbor.local")])
    files = {
        "other.crt": pem(other),
        "bundle.pem": pem(other, ca),  # a bundle: any certificate in it may sign
        "notpem.crt": b"MIIB...",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    assert chain.verified_by([leaf], [str(tmp_path / "other.crt")]) == ""
    assert chain.verified_by([leaf], [str(tmp_path / n) for n in files]) == str(
        tmp_path / "bundle.pem"
    )
    assert chain.signer([leaf], [other, ca]) == ca
    assert chain.signer([make_leaf(old, old_key, None)], [old]) is None  # expired CA
    not_a_ca, nk = make_ca("Not a CA", ca=False)
    assert chain.signer([make_leaf(not_a_ca, nk, None)], [not_a_ca]) is None
    assert chain.signer([ca], [ca]) == ca  # the root itself presented


def test_candidate_files_nearest_first(tmp_path: Path) -> None:
    d = tmp_path / "harbor.local"
    d.mkdir()
    (d / "hosts.toml").write_text('server = "https://harbor.local"\n')
    (d / "harbor-ca.crt").write_text("x")
    (d / "client.cert").write_text("x")  # not a CA file name
    (tmp_path / "_ca").mkdir()
    (tmp_path / "_ca" / "corp.pem").write_text("x")
    (tmp_path / "root.crt").write_text("x")
    endpoints = resolve_hosts("harbor.local", hosts_dirs=[str(tmp_path)])
    assert chain.candidate_files(endpoints[0], endpoints, [str(tmp_path)]) == [
        str(d / "harbor-ca.crt"),
        str(tmp_path / "root.crt"),
        str(tmp_path / "_ca" / "corp.pem"),
    ]


# --- fixes -------------------------------------------------------------------------------------


def test_tls_fix_names_the_ca_file_that_verifies(tmp_path: Path) -> None:
    d = tmp_path / "harbor.local"
    d.mkdir()
    toml = d / "hosts.toml"
    toml.write_text('server = "https://harbor.local"\n[host."https://harbor.local"]\n')
    lookup = HostsLookup.of("harbor.local", [str(tmp_path)])
    entry = resolve_hosts("harbor.local", hosts_dirs=[str(tmp_path)])[0]
    assert tls_fix(entry, lookup, "/srv/ca/harbor.pem") == (
        f'{toml} applied and sets no ca for https://harbor.local: add ca = "/srv/ca/harbor.pem" '
        'to its [host."https://harbor.local"] table (it verifies the certificate harbor.local '
        "presents)"
    )
    assert client_fix(entry, lookup) == (
        'add client = [["/path/to/client.cert", "/path/to/client.key"]] to its '
        f'[host."https://harbor.local"] table in {toml}'
    )
    toml.write_text('server = "https://harbor.local"\nca = "/etc/old-ca.crt"\n')
    entry = resolve_hosts("harbor.local", hosts_dirs=[str(tmp_path)])[0]
    assert tls_fix(entry, lookup, "/srv/ca/harbor.pem") == (
        f"{toml} applied: its ca /etc/old-ca.crt does not verify the certificate harbor.local "
        'presents; /srv/ca/harbor.pem does: write ca = "/srv/ca/harbor.pem" in its top level'
    )
    # nothing applied: where to write it
    empty = tmp_path / "empty"
    empty.mkdir()
    lookup = HostsLookup.of("harbor.local", [str(empty)])
    entry = resolve_hosts("harbor.local", hosts_dirs=[str(empty)])[0]
    assert tls_fix(entry, lookup, "/srv/ca/harbor.pem").endswith(
        f'add the registry\'s CA in {empty}/harbor.local/hosts.toml (ca = "/srv/ca/harbor.pem") '
        f"or as {empty}/harbor.local/ca.crt (it verifies the certificate harbor.local presents)"
    )


# --- the verdict -------------------------------------------------------------------------------


def endpoint(url: str, *steps: tuple[str, Severity], usable: bool) -> EndpointCheck:
    return EndpointCheck(
        url,
        "mirror",
        ("pull", "resolve"),
        "hosts.toml /h",
        tuple(CheckStep(n, s, "m") for n, s in steps),
        usable,
    )


def test_the_verdict() -> None:
    dead = endpoint("https://m/v2", ("dns", Severity.OK), ("connect", Severity.FAIL), usable=False)
    good = endpoint("https://r/v2", ("dns", Severity.OK), ("platform", Severity.OK), usable=True)
    v = _verdict([], [dead, good], "of r/a:1", "")
    assert (v.ok, v.endpoint) == (True, "https://r/v2")
    assert v.reason == (
        "a pull of r/a:1 uses endpoint 2, https://r/v2 (it falls through 1. https://m/v2 fails "
        "at connect)"
    )
    v = _verdict([], [dead], "of r/a:1", "")
    assert v == type(v)(False, None, "no endpoint works: 1. https://m/v2 fails at connect")
    problem = Finding(Severity.FAIL, "/etc/containerd/config.toml", 7, "m", "f")
    v = _verdict([problem], [good], "from r", "")
    assert (v.ok, v.endpoint) == (False, "https://r/v2")
    assert v.reason == (
        "1 configuration problem, the first at /etc/containerd/config.toml:7; a pull from r "
        "uses https://r/v2"
    )
    v = _verdict([], [], "of r/a:1", "/h/hosts.toml: invalid TOML")
    assert v.reason == "the endpoints were not probed: /h/hosts.toml: invalid TOML"


@pytest.mark.parametrize(
    "arg,host,image",
    [
        ("harbor.local", "harbor.local", None),
        ("harbor.local:5000", "harbor.local:5000", None),
        ("10.0.0.5", "10.0.0.5", None),
        ("localhost", "localhost", None),
        ("localhost:5000", "localhost:5000", None),
        ("[::1]:5000", "[::1]:5000", None),
        ("https://harbor.local/v2/", "harbor.local", None),
        ("registry:5000/", "registry:5000", None),
        ("docker.io", "docker.io", None),
        ("python:3.11", "docker.io", "docker.io/library/python:3.11"),
        ("busybox:1", "docker.io", "docker.io/library/busybox:1"),
        ("nginx:latest", "docker.io", "docker.io/library/nginx:latest"),
        ("registry:5000", "docker.io", "docker.io/library/registry:5000"),
        ("busybox", "docker.io", "docker.io/library/busybox:latest"),
        ("harbor.local/team/app:1", "harbor.local", "harbor.local/team/app:1"),
    ],
)
def test_hosts_reads_a_host_or_an_image(arg: str, host: str, image: str | None) -> None:
    found, ref = hosts_target(arg)
    assert (found, str(ref) if ref else None) == (host, image)
