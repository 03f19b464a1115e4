"""``pyctl hosts --check``, the probes (issue 12, items 2-4): each endpoint probed in the order a
pull tries it, against the test bed's real registries. Each case asserts the exact step that
fails and the hint (the file, the command, the CA file), and where it is cheap that the pull
agrees (it fails the same way, and following the fix makes it work).

Registries that must be verified listen on a non-loopback address of this machine behind a TLS
FaultProxy (loopback registries without configuration are not verified: containerd's and
docker's rule).
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import pyctl
from integration.conftest import ImageFactory, PyctlRunner, SecureRegistry
from integration.faultproxy import FaultProxy
from integration.helpers import assert_error, assert_ok, write
from integration.images import Archive
from integration.registry_helpers import (
    Helper,
    Skopeo,
    assert_failure,
    assert_success,
    auth_entry,
    hosts_check,
    write_docker_config,
)
from integration.testbed import CertAuthority, Containerd, Registry, free_port
from pyctl.oci import host_platform

STEPS = [
    "dns",
    "connect",
    "tls",
    "verify",
    "hostname",
    "v2",
    "token",
    "credentials",
    "auth",
    "manifest",
    "platform",
]
CRI2 = 'plugins."io.containerd.grpc.v1.cri"'
ALERT = r"\((alert: [a-z0-9 ]+|it closed the connection)\)"  # TLS 1.3: an alert, or a reset


def outline(endpoint: dict[str, Any]) -> list[tuple[str, str]]:
    return [(s["step"], s["severity"]) for s in endpoint["steps"]]


def step(endpoint: dict[str, Any], name: str) -> dict[str, Any]:
    found = [s for s in endpoint["steps"] if s["step"] == name]
    assert len(found) == 1, outline(endpoint)
    result: dict[str, Any] = found[0]
    return result


def ok_until(last: str) -> list[tuple[str, str]]:
    """Every step up to ``last`` ok (no token step: no Bearer challenge)."""
    names = [s for s in STEPS if s != "token"]
    return [(s, "ok") for s in names[: names.index(last) + 1]]


# --- TLS ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["unknown CA", "expired", "name not in SANs"])
def test_server_certificates(
    case: str,
    containerd: Containerd,
    namespace: str,
    isolated: PyctlRunner,
    seeded: Registry,
    cert_authority: CertAuthority,
    other_ca: CertAuthority,
    non_loopback_ip: str,
    tmp_path: Path,
) -> None:
    ip = non_loopback_ip
    if case == "unknown CA":
        cert = other_ca.issue_server_cert("other", hosts=(ip,))
    elif case == "expired":
        cert = cert_authority.issue_server_cert("old", hosts=(ip,), expired=True)
    else:
        cert = cert_authority.issue_server_cert("elsewhere", hosts=("registry.example",))
    proxy = FaultProxy(seeded, tls=cert, host=ip).start()
    try:
        host, ref = proxy.host, proxy.ref("team/app", "1")
        certs = tmp_path / "certs.d"
        ca = "" if case == "unknown CA" else f'ca = "{cert_authority.cert_path}"\n'
        toml = write(certs / host / "hosts.toml", f'server = "https://{host}"\n{ca}')
        args = ("--containerd-config", "", "--hosts-dir", str(certs))
        code, doc = hosts_check(isolated, ref, *args)
        assert code == 1
        (endpoint,) = doc["endpoints"]
        assert endpoint["usable"] is False
        assert endpoint["chain"][0]["issuer"] == (
            "CN=some other CA" if case == "unknown CA" else "CN=pyctl integration test CA"
        )
        pull = isolated(*args, "pull", ref, namespace=namespace)
        if case == "unknown CA":
            assert outline(endpoint) == [*ok_until("tls"), ("verify", "FAIL"), ("hostname", "ok")]
            verify = step(endpoint, "verify")
            assert verify["message"] == (
                f"x509: unable to get local issuer certificate for {host}: CN={ip} is signed by "
                "CN=some other CA; the system store does not hold it and no ca is configured"
            )
            assert verify["fix"] == (
                f"{toml} applied and sets no ca for https://{host}: add ca = "
                '"/path/to/ca.crt" to its top level, or use --insecure-registry'
            )
            assert_failure(pull, "x509: unable to get local issuer certificate")
            assert proxy.requests == []  # nothing went over the untrusted connection
            # the CA that signed it, somewhere in the hosts directory: named
            found = certs / "_ca" / "registry-ca.pem"
            found.parent.mkdir()
            found.write_bytes(other_ca.pem)
            code, doc = hosts_check(isolated, ref, *args)
            assert code == 1
            assert step(doc["endpoints"][0], "verify")["fix"] == (
                f'{toml} applied and sets no ca for https://{host}: add ca = "{found}" to its '
                f"top level (it verifies the certificate {host} presents)"
            )
            # following the fix works, for the check and for the pull
            toml.write_text(toml.read_text() + f'ca = "{found}"\n')
            code, doc = hosts_check(isolated, ref, *args)
            assert code == 0 and doc["verdict"]["ok"] is True
            assert step(doc["endpoints"][0], "verify")["message"] == (
                f"CN={ip} is signed by CN=some other CA, trusted through the ca {found}"
            )
            assert assert_success(isolated(*args, "pull", ref, namespace=namespace))[-1] == ref
        elif case == "expired":
            assert outline(endpoint) == [
                *ok_until("connect"),
                ("tls", "FAIL"),
                ("verify", "ok"),
                ("hostname", "ok"),
            ]
            tls = step(endpoint, "tls")
            assert tls["message"].startswith(
                f"x509: certificate has expired or is not yet valid: certificate CN={ip} expired "
                "on "
            )
            assert (
                tls["fix"] == f"renew the certificate of {host} (the registry's, not this node's)"
            )
            assert_failure(pull, "x509: certificate has expired")
        else:
            assert outline(endpoint) == [*ok_until("verify"), ("hostname", "FAIL")]
            assert step(endpoint, "hostname") == {
                "step": "hostname",
                "severity": "FAIL",
                "message": f"x509: the certificate of {host} names registry.example, not {ip}",
                "fix": f"reissue the registry's certificate with {ip} in its subjectAltName, or "
                "reach it by a name it has",
                "seconds": step(endpoint, "hostname")["seconds"],
            }
            assert_failure(pull, "x509: ip address mismatch")
        if case != "unknown CA":  # (whose fix was followed above)
            assert proxy.requests == []  # nothing went over the untrusted connection
    finally:
        proxy.stop()


def test_ca_file_missing_or_not_pem(
    isolated: PyctlRunner,
    seeded: Registry,
    cert_authority: CertAuthority,
    non_loopback_ip: str,
    tmp_path: Path,
) -> None:
    cert = cert_authority.issue_server_cert("s", (non_loopback_ip,))
    proxy = FaultProxy(seeded, tls=cert, host=non_loopback_ip).start()
    try:
        host, ref = proxy.host, proxy.ref("team/app", "1")
        certs = tmp_path / "certs.d"
        d = certs / host
        toml = write(d / "hosts.toml", f'server = "https://{host}"\nca = "ca.crt"\n')
        args = ("--containerd-config", "", "--hosts-dir", str(certs))
        code, doc = hosts_check(isolated, ref, *args)
        assert code == 1
        (endpoint,) = doc["endpoints"]
        assert outline(endpoint) == [*ok_until("tls"), ("verify", "FAIL"), ("hostname", "ok")]
        assert step(endpoint, "verify")["message"] == (
            f"cannot load CA file {d}/ca.crt (from {toml}): No such file or directory: every pull "
            f"from {host} fails before it connects"
        )
        assert step(endpoint, "verify")["fix"] == f"put the registry's CA at {d}/ca.crt in PEM form"
        # the lint says it too, with the line
        assert [(f["severity"], f["line"]) for f in doc["config"] if f["severity"] != "ok"] == [
            ("warn", None),  # no [host] table
            ("FAIL", 2),
        ]

        (d / "ca.crt").write_text("MIIB...not a PEM file\n")
        pem = d / "registry-ca.pem"
        pem.write_bytes(cert_authority.pem)
        code, doc = hosts_check(isolated, ref, *args)
        assert code == 1
        verify = step(doc["endpoints"][0], "verify")
        assert verify["severity"] == "FAIL"
        assert verify["message"].startswith(f"cannot load CA file {d}/ca.crt (from {toml}): ")
        assert "no certificate or crl found" in verify["message"]
        assert verify["fix"] == (
            f"{pem} verifies {host}: copy it to {d}/ca.crt, or name it in {toml}"
        )
    finally:
        proxy.stop()


# --- mutual TLS --------------------------------------------------------------------------------


def test_mutual_tls(
    isolated: PyctlRunner,
    mtls_registry: SecureRegistry,
    cert_authority: CertAuthority,
    tiny: Archive,
    tmp_path: Path,
) -> None:
    reg = mtls_registry
    reg.seed(tiny, "team/app", "1")
    good = reg.client_cert
    assert good is not None
    foreign_key = cert_authority.issue_client_cert("another-client").key
    ref, host = reg.ref("team/app", "1"), reg.host
    certs = tmp_path / "certs.d"
    top = f'server = "https://{host}"\nca = "{cert_authority.cert_path}"\n'
    toml = write(certs / host / "hosts.toml", top)
    args = ("--containerd-config", "", "--hosts-dir", str(certs))

    # no client certificate: the registry ends the handshake
    code, doc = hosts_check(isolated, ref, *args)
    assert code == 1
    (endpoint,) = doc["endpoints"]
    assert outline(endpoint) == [
        *ok_until("connect"),
        ("tls", "FAIL"),
        ("verify", "ok"),
        ("hostname", "ok"),
    ]
    tls = step(endpoint, "tls")
    assert re.fullmatch(
        rf"{re.escape(host)} ended the handshake {ALERT}: it wants a client certificate, and "
        rf"hosts.toml {re.escape(str(toml))} gives none",
        tls["message"],
    ), tls["message"]
    assert tls["fix"] == (
        f'add client = [["/path/to/client.cert", "/path/to/client.key"]] to its top level in {toml}'
    )

    # a certificate whose key does not match: a pull fails before it connects; the handshake
    # without it shows the registry's alert
    toml.write_text(top + f'client = [["{good.cert}", "{foreign_key}"]]\n')
    code, doc = hosts_check(isolated, ref, *args)
    assert code == 1
    tls = step(doc["endpoints"][0], "tls")
    assert tls["severity"] == "FAIL"
    assert re.fullmatch(
        rf"cannot load client certificate {re.escape(f'{good.cert} / {foreign_key}')} \(from "
        rf"{re.escape(str(toml))}\): .*key values mismatch.*: every pull from "
        rf"{re.escape(host)} fails before it connects; without it, {re.escape(host)} ends the "
        rf"handshake {ALERT}",
        tls["message"],
    ), tls["message"]
    assert tls["fix"] == f"pair {good.cert} with the key it was issued for"

    # the right pair
    toml.write_text(top + f'client = [["{good.cert}", "{good.key}"]]\n')
    code, doc = hosts_check(isolated, ref, *args)
    assert code == 0
    assert outline(doc["endpoints"][0]) == ok_until("platform")


# --- credentials -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["basic", "token"])
def test_credentials(
    kind: str,
    request: pytest.FixtureRequest,
    pyctl: PyctlRunner,
    tiny: Archive,
    tmp_path: Path,
) -> None:
    reg: SecureRegistry = request.getfixturevalue(f"{kind}_registry")
    user = "testuser" if kind == "basic" else "bob"  # bob may pull, not push
    reg.seed(tiny, "team/app", "1", user="testuser" if kind == "basic" else "alice")
    ref, host = reg.ref("team/app", "1"), reg.host
    docker = tmp_path / "docker"
    env = {"DOCKER_CONFIG": str(docker)}
    args = ("--containerd-config", "", "--hosts-dir", str(reg.certs_d))
    # (a loopback registry with a certs.d directory: not verified, no name check)
    before = [("dns", "ok"), ("connect", "ok"), ("tls", "ok"), ("verify", "ok"), ("v2", "ok")]
    if kind == "token":
        before.append(("token", "ok"))

    def run() -> tuple[int, dict[str, Any]]:
        return hosts_check(pyctl, ref, *args, env=env)

    # no credentials
    write_docker_config(docker, {})
    code, doc = run()
    (endpoint,) = doc["endpoints"]
    assert (code, outline(endpoint)) == (1, [*before, ("credentials", "ok"), ("auth", "FAIL")])
    assert step(endpoint, "credentials")["message"] == (
        f"none stored for {host}: requests go anonymous"
    )
    auth = step(endpoint, "auth")
    assert f"no credentials for {host}: run pyctl login {host}" in auth["message"]
    assert auth["fix"] == f"pyctl login {host}"
    if kind == "token":
        assert step(endpoint, "v2")["message"] == (
            f"GET https://{host}/v2/: HTTP 401, wants a Bearer token from "
            f"{reg.token_server.url}/token, service pyctl-test-registry"
        )

    # a wrong password
    config = write_docker_config(docker, {"auths": {host: auth_entry(user, "wrong")}})
    code, doc = run()
    (endpoint,) = doc["endpoints"]
    assert (code, outline(endpoint)) == (1, [*before, ("credentials", "ok"), ("auth", "FAIL")])
    assert (
        step(endpoint, "credentials")["message"] == f"user {user} from {config}, stored for {host}"
    )
    auth = step(endpoint, "auth")
    assert f"pyctl login {host}" in auth["message"] and "wrong" not in json.dumps(doc)
    assert auth["fix"] == f"pyctl login {host}"

    # the right one
    write_docker_config(docker, {"auths": {host: auth_entry(user, reg.users[user])}})
    code, doc = run()
    (endpoint,) = doc["endpoints"]
    assert (code, outline(endpoint)) == (
        0,
        [*before, ("credentials", "ok"), ("auth", "ok"), ("manifest", "ok"), ("platform", "ok")],
    )
    how = "a token" if kind == "token" else "Basic credentials"
    assert step(endpoint, "auth")["message"] == (
        f"repository:team/app:pull: allowed with {how} (user {user} from {config})"
    )
    assert reg.users[user] not in json.dumps(doc)

    # only the host: /v2/ with the credentials is the check
    proc = pyctl(*args, "hosts", "--check", "--format", "json", host, env=env)
    doc = json.loads(assert_ok(proc))
    assert outline(doc["endpoints"][0])[-1] == ("auth", "ok")
    assert doc["verdict"]["reference"] is None


def test_credentials_from_a_helper_and_from_the_cri_config(
    pyctl: PyctlRunner,
    basic_registry: SecureRegistry,
    tiny: Archive,
    tmp_path: Path,
    helper: Helper,
) -> None:
    reg = basic_registry
    reg.seed(tiny, "team/app", "1")
    ref, host = reg.ref("team/app", "1"), reg.host
    docker = tmp_path / "docker"
    helper.store.write_text(json.dumps({host: {"Username": "testuser", "Secret": "testpassword"}}))
    write_docker_config(docker, {"credsStore": "pyctltest"})
    env = {"DOCKER_CONFIG": str(docker), **helper.env()}
    args = ("--containerd-config", "", "--hosts-dir", str(reg.certs_d))
    proc = pyctl(*args, "hosts", "--check", "--format", "json", ref, env=env)
    doc = json.loads(assert_ok(proc))
    endpoint = doc["endpoints"][0]
    assert step(endpoint, "credentials")["message"] == (
        f"user testuser from credential helper docker-credential-pyctltest, stored for {host}"
    )
    assert step(endpoint, "auth")["severity"] == "ok"
    assert {tuple(c["argv"]) for c in helper.calls()} == {("get",)}  # asked, nothing stored

    # the CRI config's auth section, when config.json has nothing
    write_docker_config(docker, {})
    main = write(
        tmp_path / "config.toml",
        f'version = 2\n[{CRI2}.registry.configs."{host}".auth]\n'
        '  username = "testuser"\n  password = "testpassword"\n',
    )
    args = ("--containerd-config", str(main), "--hosts-dir", str(reg.certs_d))
    proc = pyctl(*args, "hosts", "--check", "--format", "json", ref, env=env)
    doc = json.loads(assert_ok(proc))
    assert step(doc["endpoints"][0], "credentials")["message"] == (
        f"user testuser from CRI config {main}, stored for {host}"
    )


# --- endpoints in pull order -------------------------------------------------------------------


def test_a_dead_first_mirror(
    containerd: Containerd, namespace: str, isolated: PyctlRunner, seeded: Registry, tmp_path: Path
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    certs = tmp_path / "certs.d"
    write(
        certs / seeded.host / "hosts.toml",
        f'server = "http://{seeded.host}"\n'
        f'[host."http://{dead}"]\n  capabilities = ["pull", "resolve"]\n',
    )
    ref = seeded.ref("team/app", "1")
    args = ("--containerd-config", "", "--hosts-dir", str(certs))
    code, doc = hosts_check(isolated, ref, *args)
    assert code == 0
    mirror, server = doc["endpoints"]
    assert (mirror["role"], server["role"]) == ("mirror", "registry")
    assert outline(mirror) == [("dns", "ok"), ("connect", "FAIL")]
    assert step(mirror, "connect")["message"] == (
        f"connection refused by {dead}: nothing listens on port {dead.split(':')[1]}"
    )
    assert outline(server) == [(s, "ok") for s in STEPS if s not in ("verify", "hostname", "token")]
    url = f"http://{seeded.host}/v2"
    assert doc["verdict"] == {
        "ok": True,
        "registry": seeded.host,
        "reference": ref,
        "endpoint": url,
        "reason": f"a pull of {ref} uses endpoint 2, {url} (it falls through 1. "
        f"http://{dead}/v2 fails at connect)",
    }
    # the pull agrees
    assert assert_success(isolated(*args, "pull", ref, namespace=namespace))[-1] == ref


def test_stalled_endpoints_end_at_the_timeout(
    isolated: PyctlRunner, seeded: Registry, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    """A socket that takes connections and never answers (an https mirror: its TLS handshake
    stalls), a proxy that stalls every answer (a plain HTTP mirror: its GET /v2/ stalls): each
    ends its step at the timeout, the report completes and names the server."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # never accepted: the kernel completes the handshakes
    fault_proxy.stall(120, before_headers=True, times=None)
    try:
        quiet = f"127.0.0.1:{silent.getsockname()[1]}"
        certs = tmp_path / "certs.d"
        write(
            certs / seeded.host / "hosts.toml",
            f'server = "http://{seeded.host}"\n'
            f'[host."https://{quiet}"]\n  capabilities = ["pull", "resolve"]\n'
            "  skip_verify = true\n"
            f'[host."http://{fault_proxy.host}"]\n  capabilities = ["pull", "resolve"]\n',
        )
        ref = seeded.ref("team/app", "1")
        began = time.monotonic()
        code, doc = hosts_check(
            isolated, ref, "--containerd-config", "", "--hosts-dir", str(certs), timeout=1
        )
        elapsed = time.monotonic() - began
    finally:
        silent.close()
    assert code == 0
    first, second, server = doc["endpoints"]
    assert outline(first) == [("dns", "ok"), ("connect", "ok"), ("tls", "FAIL")]
    assert step(first, "tls")["message"] == (
        f"no answer within 1 s to the TLS handshake: {quiet} took the connection and said nothing"
    )
    assert outline(second) == [("dns", "ok"), ("connect", "ok"), ("tls", "ok"), ("v2", "FAIL")]
    assert re.search(r"timeout talking to|no answer within 1 s", step(second, "v2")["message"])
    for stalled in (step(first, "tls"), step(second, "v2")):
        assert 0.9 < stalled["seconds"] < 2.0, stalled
    assert server["usable"] is True
    assert doc["verdict"]["endpoint"] == f"http://{seeded.host}/v2"
    # two steps of at most 1 s (and a grace of 0.25 s) each, the rest is quick: the bound
    # is functional (the proxy stalls for 120 s), not a speed test
    assert elapsed < 2 * 1.25 + 15, elapsed


# --- the image ---------------------------------------------------------------------------------


def test_what_is_not_there(
    namespace: str,
    isolated: PyctlRunner,
    seeded: Registry,
    image_factory: ImageFactory,
    tmp_path: Path,
) -> None:
    # an index without this machine's platform, and a manifest for another one
    arc = image_factory(
        "example.test/p:1", platforms=["linux/arm64", "linux/s390x"], variant_content="probe-p"
    )
    Skopeo(tmp_path).seed(arc.path, seeded.ref("team/multi", "1"), all_platforms=True)
    other = image_factory(
        "example.test/p:2", platform="linux/arm64", runnable=False, variant_content="probe-q"
    )
    Skopeo(tmp_path).seed(other.path, seeded.ref("team/other", "1"))
    args = ("--containerd-config", "", "--hosts-dir", str(tmp_path / "none"))
    where, here = f"http://{seeded.host}", str(host_platform())
    cases = {  # what fails (the step before it is ok), and what it says: what is there
        "team/app:2": (
            "manifest",
            f"tag 2 not found in repository team/app at {where} (its tags: 1)",
        ),
        "team/nope:1": ("manifest", f"repository team/nope not found at {where}"),
        "team/multi:1": (
            "platform",
            f"no manifest for {here} in this image (it has: linux/arm64, linux/s390x); use "
            "--platform or --all-platforms",
        ),
        "team/other:1": (
            "platform",
            f"image is for linux/arm64, not {here} (use --platform to choose another one)",
        ),
    }
    for name, (failing, message) in cases.items():
        ref = f"{seeded.host}/{name}"
        code, doc = hosts_check(isolated, ref, *args)
        (endpoint,) = doc["endpoints"]
        assert code == 1
        before = "auth" if failing == "manifest" else "manifest"
        assert outline(endpoint)[-2:] == [(before, "ok"), (failing, "FAIL")]
        assert step(endpoint, failing)["message"] == message
        # the pull says the same
        assert message in assert_failure(isolated(*args, "pull", ref, namespace=namespace))


# --- a healthy setup, the JSON document, writing nothing ---------------------------------------


@pytest.fixture
def healthy(
    token_registry: SecureRegistry, cert_authority: CertAuthority, tiny: Archive, tmp_path: Path
) -> Iterator[tuple[SecureRegistry, Path, Path]]:
    """The token registry with bob's credentials in config.json and a hosts.toml that gives both
    its endpoints (the [host] entry and the server) the CA: (registry, certs.d, config dir)."""
    reg = token_registry
    reg.seed(tiny, "team/app", "1", user="alice")
    certs = tmp_path / "certs.d"
    ca = cert_authority.cert_path
    write(
        certs / reg.host / "hosts.toml",
        f'server = "https://{reg.host}"\nca = "{ca}"\n\n[host."https://{reg.host}"]\n'
        f'  capabilities = ["pull", "resolve", "push"]\n  ca = "{ca}"\n',
    )
    docker = tmp_path / "docker"
    write_docker_config(docker, {"auths": {reg.host: auth_entry("bob", "builder")}})
    yield reg, certs, docker


def test_a_healthy_setup(pyctl: PyctlRunner, healthy: tuple[SecureRegistry, Path, Path]) -> None:
    reg, certs, docker = healthy
    ref = reg.ref("team/app", "1")
    env = {"DOCKER_CONFIG": str(docker)}
    args = ("--containerd-config", "", "--hosts-dir", str(certs))
    proc = pyctl(*args, "hosts", "--check", "--format", "json", ref, env=env)
    doc = json.loads(assert_ok(proc))
    assert set(doc) == {"config", "endpoints", "verdict"}
    assert {f["severity"] for f in doc["config"]} == {"ok"}
    url = f"https://{reg.host}/v2"
    assert [e["url"] for e in doc["endpoints"]] == [url, url]
    for e in doc["endpoints"]:
        assert set(e) == {"url", "role", "capabilities", "config", "usable", "chain", "steps"}
        assert (e["role"], e["usable"]) == ("registry", True)
        assert e["config"] == f"hosts.toml {certs / reg.host / 'hosts.toml'}"
        assert outline(e) == [(s, "ok") for s in STEPS]
        for s in e["steps"]:
            assert set(s) == {"step", "severity", "message", "fix", "seconds"}
            assert s["fix"] == "" and isinstance(s["seconds"], float)
        (cert,) = e["chain"]
        assert set(cert) == {"subject", "issuer", "names", "not_before", "not_after", "sha256"}
        assert cert["names"] == ["localhost", "127.0.0.1", "::1"]
        datetime.fromisoformat(cert["not_after"])
    assert [e["capabilities"] for e in doc["endpoints"]] == [
        ["pull", "resolve", "push"],
        ["pull", "resolve", "push", "referrers"],
    ]
    assert doc["verdict"] == {
        "ok": True,
        "registry": reg.host,
        "reference": ref,
        "endpoint": url,
        "reason": f"a pull of {ref} uses endpoint 1, {url}",
    }
    # the checklist: one line a step, under its endpoint
    text = assert_ok(pyctl(*args, "hosts", "--check", ref, env=env))
    lines = text.splitlines()
    assert lines[:2] == [f"Registry: {reg.host}", f"Image: {ref}"]
    steps = [ln for ln in lines if ln.startswith("   ")]
    assert len(steps) == 2 * len(STEPS)
    assert all(re.match(r"   ok    [a-z0-9]+ +\S", ln) for ln in steps), steps
    assert lines[-1] == f"Verdict: ok: a pull of {ref} uses endpoint 1, {url}"


def test_writes_nothing_and_needs_no_containerd(
    pyctl: PyctlRunner,
    healthy: tuple[SecureRegistry, Path, Path],
    helper: Helper,
    tmp_path: Path,
) -> None:
    reg, certs, docker = healthy
    helper.store.write_text(json.dumps({reg.host: {"Username": "bob", "Secret": "builder"}}))
    write_docker_config(docker, {"credsStore": "pyctltest"})
    env = {"DOCKER_CONFIG": str(docker), **helper.env()}

    def files() -> list[tuple[Path, int, bytes]]:
        keep = (helper.log,)  # the fake helper's own log of what it was asked
        return sorted(
            (p, p.stat().st_mtime_ns, p.read_bytes())
            for p in [*tmp_path.rglob("*"), *pyctl.home.rglob("*")]
            if p.is_file() and p not in keep
        )

    before = files()
    for target in (reg.ref("team/app", "1"), reg.ref("team/app", "2"), reg.host):
        proc = pyctl(
            "--address",
            str(tmp_path / "no-containerd.sock"),  # a later --address wins
            "--containerd-config",
            "",
            "--hosts-dir",
            str(certs),
            "hosts",
            "--check",
            target,
            env=env,
        )
        assert proc.returncode == (1 if target.endswith(":2") else 0), proc.stdout + proc.stderr
    assert files() == before
    assert {tuple(c["argv"]) for c in helper.calls()} == {("get",)}


def test_bad_input_is_one_line(isolated: PyctlRunner) -> None:
    assert_error(
        isolated("hosts", "--check", "--timeout", "0", "harbor.local/a:1"),
        "Invalid value for '--timeout'",
        code=2,
    )
    assert_error(
        isolated("hosts", "harbor.local", "--timeout", "3"),
        "hosts: --timeout goes with --check",
        code=2,
    )
    assert_error(isolated("hosts", "--check", "Not/A/Ref"), "hosts Not/A/Ref: invalid reference")


# --- the Python API ----------------------------------------------------------------------------


def test_client_check(
    healthy: tuple[SecureRegistry, Path, Path],
    isolated: PyctlRunner,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    reg, certs, docker = healthy
    monkeypatch.setenv("DOCKER_CONFIG", str(docker))
    config = tmp_path / "pyctl.toml"
    config.write_text("")
    ref = reg.ref("team/app", "1")
    with pyctl_connect(tmp_path, certs, config) as c:
        report = c.check(ref, timeout=2.0)
        assert isinstance(report, pyctl.HostsCheck)
        assert report.verdict == pyctl.CheckVerdict(
            True,
            f"https://{reg.host}/v2",
            f"a pull of {ref} uses endpoint 1, https://{reg.host}/v2",
        )
        first = report.endpoints[0]
        assert isinstance(first, pyctl.EndpointCheck) and first.failed is None
        assert [s.step for s in first.steps] == STEPS
        assert all(s.severity is pyctl.Severity.OK for s in first.steps)
        assert isinstance(first.chain[0], pyctl.PresentedCertificate)
        assert isinstance(first.chain[0].not_after, datetime)
        # the same report as the CLI's (but for the times)
        args = ("--containerd-config", "", "--hosts-dir", str(certs))
        code, doc = hosts_check(isolated, ref, *args, env={"DOCKER_CONFIG": str(docker)})
        assert code == 0 and _timeless(report.as_dict()) == _timeless(doc)

        missing = c.check(reg.ref("team/app", "9"))
        assert missing.verdict.ok is False and missing.verdict.endpoint is None
        failed = missing.endpoints[0].failed
        assert failed is not None and failed.step == "manifest"
        assert failed.severity == "FAIL"
        with pytest.raises(pyctl.InvalidArgumentError, match="timeout must be positive"):
            c.check(ref, timeout=0)


def pyctl_connect(tmp_path: Path, certs: Path, config: Path) -> pyctl.Client:
    return pyctl.connect(
        str(tmp_path / "no-containerd.sock"),
        hosts_dir=[str(certs)],
        containerd_config="",
        config=str(config),
    )


def _timeless(doc: Any) -> Any:
    """``doc`` without the times it took (``seconds``, ``in 0.3 ms``)."""
    if isinstance(doc, dict):
        return {k: _timeless(v) for k, v in doc.items() if k != "seconds"}
    if isinstance(doc, list):
        return [_timeless(v) for v in doc]
    if isinstance(doc, str):
        return re.sub(r"\b\d+(\.\d+)? m?s\b", "T", doc)
    return doc
