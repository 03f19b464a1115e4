"""TLS: certificates are verified by default, and each way verification can fail says so in
one line with what to do; so does each way mutual TLS can fail.

The registries here listen on a non-loopback address of this machine with no
configuration at all unless a case adds a CA: loopback registries are insecure by default
(pyctl, like containerd and docker, skips verification for 127.0.0.0/8, ::1 and localhost
when nothing is configured for them), as test_verification_is_on_by_default shows.
test_registry_config.py covers a CA from hosts.toml, a wrong CA there, skip_verify and a
missing client certificate.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from integration.conftest import PyctlRunner, SecureRegistry
from integration.faultproxy import FaultProxy
from integration.images import Archive
from integration.registry_helpers import (
    assert_failure,
    assert_success,
    ctr_images,
    images_check,
)
from integration.testbed import (
    CertAuthority,
    Containerd,
    Registry,
    free_port,
    write_cert_dir,
)

HERE = "<this machine's non-loopback address>"  # placeholder in CERTS


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


CERTS = {
    # case -> (issuer, SANs, expired, fragments of the error)
    "unknown-ca": (
        "other",
        (HERE,),
        False,
        (
            "x509: unable to get local issuer certificate",
            # the configuration that applied, and what is wrong with it
            "certs.d directory ",
            "/ca.crt does not verify the certificate",
            "--insecure",
        ),
    ),
    "expired": (
        "ours",
        (HERE,),
        True,
        ("x509: certificate has expired", "outside its validity period"),
    ),
    "hostname-mismatch": (
        "ours",
        ("registry.example",),
        False,
        ("x509: ip address mismatch", "does not name this host"),
    ),
}


@pytest.mark.parametrize("case", list(CERTS))
def test_server_certificate_verification(
    containerd: Containerd,
    namespace: str,
    pyctl: PyctlRunner,
    seeded: Registry,
    cert_authority: CertAuthority,
    other_ca: CertAuthority,
    non_loopback_ip: str,
    tmp_path: Path,
    case: str,
) -> None:
    """With our CA configured for the host (hosts directory with ``ca.crt``), a registry
    whose certificate comes from another CA, has expired or names another host is refused
    with one line naming the problem; nothing is pulled. ``--insecure-registry`` (skip
    verification) then works, which shows the certificate was the only problem."""
    issuer, sans, expired, fragments = CERTS[case]
    ca = other_ca if issuer == "other" else cert_authority
    sans = tuple(non_loopback_ip if h == HERE else h for h in sans)
    cert = ca.issue_server_cert(_name(case), hosts=sans, expired=expired)
    proxy = FaultProxy(seeded, tls=cert, host=non_loopback_ip).start()
    try:
        hosts = tmp_path / "certs.d"
        write_cert_dir(hosts / proxy.host, ca=cert_authority.cert_path)
        ref = proxy.ref("team/app", "1")
        args = ["--hosts-dir", str(hosts)]
        proc = pyctl(*args, "pull", ref, namespace=namespace)
        assert_failure(proc, f"pull {ref}:", *fragments, proxy.host)
        assert ctr_images(containerd, namespace) == {}
        assert proxy.requests == []  # no HTTP request went over the untrusted connection

        proc = pyctl(*args, "--insecure-registry", "pull", ref, namespace=namespace)
        assert assert_success(proc)[-1] == ref
        assert images_check(containerd, namespace)[ref] == ("complete", True)
    finally:
        proxy.stop()


def test_verification_is_on_by_default(
    containerd: Containerd,
    namespace: str,
    pyctl: PyctlRunner,
    seeded: Registry,
    cert_authority: CertAuthority,
    non_loopback_ip: str,
    tmp_path: Path,
) -> None:
    """No hosts directory, no flag: a registry with a perfectly good certificate from a CA
    the system does not trust is refused; with the CA configured it works. A loopback
    registry with no configuration is not verified (containerd's and docker's rule)."""
    good = cert_authority.issue_server_cert(_name("good"), hosts=(non_loopback_ip, "127.0.0.1"))
    proxy = FaultProxy(seeded, tls=good, host=non_loopback_ip).start()
    loopback = FaultProxy(seeded, tls=good).start()
    try:
        nothing = ["--hosts-dir", str(tmp_path / "empty")]
        ref = proxy.ref("team/app", "1")
        proc = pyctl(*nothing, "pull", ref, namespace=namespace)
        assert_failure(proc, "x509: unable to get local issuer certificate", proxy.host)
        assert ctr_images(containerd, namespace) == {}

        hosts = tmp_path / "certs.d"
        write_cert_dir(hosts / proxy.host, ca=cert_authority.cert_path)
        proc = pyctl("--hosts-dir", str(hosts), "pull", ref, namespace=namespace)
        assert assert_success(proc)[-1] == ref

        ref = loopback.ref("team/app", "1")
        proc = pyctl(*nothing, "pull", ref, namespace=namespace)
        assert assert_success(proc)[-1] == ref
        shown = pyctl(*nothing, "hosts", loopback.host, "--format", "json")
        assert json.loads(shown.stdout)["Endpoints"][-1]["SkipVerify"] is True
    finally:
        proxy.stop()
        loopback.stop()


# --- mutual TLS -------------------------------------------------------------------------------


@pytest.fixture
def mtls(mtls_registry: SecureRegistry, tiny: Archive) -> SecureRegistry:
    mtls_registry.seed(tiny, "team/app", "1")
    return mtls_registry


def test_mutual_tls_failures_are_named(
    containerd: Containerd,
    namespace: str,
    pyctl: PyctlRunner,
    mtls: SecureRegistry,
    cert_authority: CertAuthority,
    other_ca: CertAuthority,
    tmp_path: Path,
) -> None:
    """The registry wants a client certificate from our CA. Each wrong one fails in one line
    naming the certificate: one from another CA and an expired one are refused by the
    registry; a key that does not match and a file that does not exist are caught before
    connecting (with the hosts.toml they came from)."""
    good = mtls.client_cert
    assert good is not None
    foreign = other_ca.issue_client_cert(_name("foreign"))
    expired = cert_authority.issue_client_cert(_name("expired"), expired=True)
    missing = tmp_path / "missing.cert"
    cases = {
        "foreign": (
            (foreign.cert, foreign.key),
            ("refused the client certificate", str(foreign.cert)),
        ),
        "expired": (
            (expired.cert, expired.key),
            ("refused the client certificate", str(expired.cert)),
        ),
        "mismatch": (
            (good.cert, foreign.key),
            ("cannot load client certificate", "key values mismatch"),
        ),
        "missing": (
            (missing, good.key),
            ("cannot load client certificate", str(missing), "No such file"),
        ),
        "good": ((good.cert, good.key), ()),
    }
    ref = mtls.ref("team/app", "1")
    for case, ((cert, key), fragments) in cases.items():
        hosts = tmp_path / case
        toml = hosts / mtls.host / "hosts.toml"
        toml.parent.mkdir(parents=True)
        toml.write_text(
            f'server = "https://{mtls.host}"\nca = "{cert_authority.cert_path}"\n'
            f'client = [["{cert}", "{key}"]]\n'
        )
        proc = pyctl("--hosts-dir", str(hosts), "pull", ref, namespace=namespace)
        if not fragments:
            assert assert_success(proc)[-1] == ref
            continue
        msg = assert_failure(proc, f"pull {ref}:", *fragments)
        if case in ("mismatch", "missing"):
            assert str(toml) in msg
        assert ref not in ctr_images(containerd, namespace), case


# --- errors name the configuration that applied ----------------------------------------------


@pytest.fixture
def private_ca_registry(
    seeded: Registry, cert_authority: CertAuthority, non_loopback_ip: str
) -> Iterator[FaultProxy]:
    """``seeded`` behind TLS from the test CA, on a non-loopback address (so verified)."""
    cert = cert_authority.issue_server_cert(_name("node"), hosts=(non_loopback_ip,))
    with FaultProxy(seeded, tls=cert, host=non_loopback_ip) as proxy:
        yield proxy


def test_tls_errors_name_the_hosts_toml_that_applied(
    containerd: Containerd,
    namespace: str,
    pyctl: PyctlRunner,
    private_ca_registry: FaultProxy,
    cert_authority: CertAuthority,
    tmp_path: Path,
) -> None:
    """The three ways a node's certs.d goes wrong give three different messages, each naming
    the file (or the directory that nearly matched) and the fix; following it works."""
    proxy = private_ca_registry
    host, ip = proxy.host, proxy.host.rsplit(":", 1)[0]
    ref = proxy.ref("team/app", "1")
    certs = tmp_path / "certs.d"
    args = ["--hosts-dir", str(certs)]

    def pull() -> str:
        proc = pyctl(*args, "pull", ref, namespace=namespace)
        msg = assert_failure(proc, f"pull {ref}: x509: unable to get local issuer certificate")
        assert ctr_images(containerd, namespace) == {}
        return msg

    # 1. the hosts.toml is in a directory without the port: it does not apply
    wrong = certs / ip
    wrong.mkdir(parents=True)
    (wrong / "hosts.toml").write_text(f'server = "https://{host}"\n')
    msg = pull()
    assert f"no hosts.toml applies to {host} (looked in {certs})" in msg
    assert f"{wrong} is for {ip}, not {host}" in msg
    assert f"add the registry's CA in {certs / host}/hosts.toml" in msg
    wrong.rename(certs / host)

    # 2. now it applies, but sets no ca: named, with the top-level fix
    toml = certs / host / "hosts.toml"
    msg = pull()
    assert f'{toml} applied and sets no ca for https://{host}: add ca = "/path/to/ca.crt"' in msg
    assert "to its top level" in msg

    # 3. a [host] entry for the server, and ca.crt dropped beside the file (not read then)
    ca = certs / host / "ca.crt"
    ca.write_bytes(cert_authority.cert_path.read_bytes())
    toml.write_text(
        f'server = "https://{host}"\n'
        f'[host."https://{host}"]\n  capabilities = ["pull", "resolve"]\n'
    )
    msg = pull()
    assert f'add ca = "{ca}" to its [host."https://{host}"] table' in msg
    assert "(ca.crt beside a hosts.toml is not read)" in msg

    # following the fix works
    toml.write_text(toml.read_text() + f'  ca = "{ca}"\n')
    assert assert_success(pyctl(*args, "pull", ref, namespace=namespace))[-1] == ref

    # login meets the same words
    toml.write_text(f'server = "https://{host}"\n')
    proc = pyctl(*args, "login", host, "-u", "u", "--password-stdin", input="p\n")
    assert_failure(proc, f"login {host}: x509:", f"{toml} applied and sets no ca")


def test_connection_and_auth_errors_name_their_configuration(
    containerd: Containerd,
    namespace: str,
    pyctl: PyctlRunner,
    basic_registry: SecureRegistry,
    tmp_path: Path,
) -> None:
    certs = tmp_path / "certs.d"
    host = basic_registry.host
    d = certs / host
    d.mkdir(parents=True)
    toml = d / "hosts.toml"
    toml.write_text(f'server = "https://{host}"\nca = "{basic_registry.cert_dir / "ca.crt"}"\n')
    docker = tmp_path / "docker"
    docker.mkdir()
    env = {"DOCKER_CONFIG": str(docker)}
    ref = basic_registry.ref("team/app", "1")
    args = ["--hosts-dir", str(certs)]
    # no credentials: which endpoint, from which file
    proc = pyctl(*args, "pull", ref, namespace=namespace, env=env)
    assert_failure(
        proc,
        f"no credentials for {host}: run pyctl login {host}",
        f"endpoint https://{host} from hosts.toml {toml}",
    )
    # a server that refuses connections: named with its file
    dead = f"127.0.0.1:{free_port()}"
    toml.write_text(f'server = "https://{dead}"\n')
    proc = pyctl(*args, "pull", ref, namespace=namespace, env=env)
    assert_failure(
        proc, f"connection refused by {dead}", f"endpoint https://{dead} from hosts.toml {toml}"
    )
