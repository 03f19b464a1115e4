"""Registry configuration as an operator writes it: hosts.toml in certs.d-style hosts
directories (``--hosts-dir``, pyctl.toml ``hosts_dir``, containerd's CRI ``config_path``),
docker-style certificate directories, mirrors, ``override_path``, the ``ns`` query, TLS
(CA, skip_verify, client certificates, ``--insecure-registry``), the legacy CRI
``registry.mirrors``/``configs`` section, and ``pyctl hosts`` explaining all of it.

Every pull is checked twice: what the user sees (exit status, stdout, the one error line)
and what containerd has afterwards (``ctr images ls``)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import pytest

from integration.conftest import PyctlRunner, SecureRegistry
from integration.faultproxy import FaultProxy, _ProxyHandler
from integration.helpers import assert_error, assert_ok, ctr_image_digests, run_all, run_many
from integration.images import Archive
from integration.registry_helpers import (
    assert_not_pulled,
    assert_pulled,
    auth_entry,
    hosts_json,
    seed,
)
from integration.testbed import CertAuthority, Containerd, Registry, free_port

HARBOR = "harbor.local"


# --- helpers --------------------------------------------------------------------------------------


def hosts_toml(root: Path, host: str, text: str, **files: bytes) -> Path:
    """``ROOT/HOST/hosts.toml`` holding ``text`` (plus extra files); returns ROOT."""
    d = root / host
    d.mkdir(parents=True, exist_ok=True)
    (d / "hosts.toml").write_text(text)
    for name, data in files.items():
        (d / name).write_bytes(data)
    return root


@pytest.fixture
def empty_cri(tmp_path: Path) -> str:
    """An empty containerd config: no CRI registry settings."""
    path = tmp_path / "containerd-config-without-cri.toml"
    path.touch()
    return str(path)


def with_hosts(hosts_dir: Path, containerd_config: str) -> list[str]:
    """Global options: only this hosts directory, this containerd config."""
    return ["--hosts-dir", str(hosts_dir), "--containerd-config", containerd_config]


def ca_bytes(reg: SecureRegistry) -> bytes:
    assert reg.ca_path is not None
    return reg.ca_path.read_bytes()


# --- where hosts directories come from ------------------------------------------------------------


def test_hosts_dir_maps_a_name_to_a_tls_server_with_a_relative_ca(
    containerd: Containerd,
    namespace: str,
    isolated: PyctlRunner,
    tls_registry: SecureRegistry,
    tiny: Archive,
    tmp_path: Path,
    empty_cri: str,
) -> None:
    """``harbor.local`` -> ``server = "https://127.0.0.1:PORT"``, ``ca = "ca.crt"`` next to
    the hosts.toml, found through --hosts-dir, pyctl.toml ``hosts_dir`` and the CRI
    ``config_path`` of a containerd config given with --containerd-config."""
    seed(tls_registry, "team/app", tiny, "1", "2", "3")
    certs = hosts_toml(
        tmp_path / "certs.d",
        HARBOR,
        f'server = "https://{tls_registry.host}"\nca = "ca.crt"\n',
        **{"ca.crt": ca_bytes(tls_registry)},
    )

    # 1. --hosts-dir
    proc = isolated(
        *with_hosts(certs, empty_cri), "pull", f"{HARBOR}/team/app:1", namespace=namespace
    )
    assert_pulled(proc, containerd, namespace, f"{HARBOR}/team/app:1", tiny.digest)

    # 2. hosts_dir in pyctl.toml (a list, with a directory that has nothing for the host first)
    cfg = tmp_path / "pyctl.toml"
    cfg.write_text(
        f"hosts_dir = [{json.dumps(str(tmp_path / 'nothing'))}, {json.dumps(str(certs))}]\n"
        f"containerd_config = {json.dumps(empty_cri)}\n"
    )
    proc = isolated("--config", str(cfg), "pull", f"{HARBOR}/team/app:2", namespace=namespace)
    assert_pulled(proc, containerd, namespace, f"{HARBOR}/team/app:2", tiny.digest)

    # 3. config_path of containerd's own config (version 2 layout)
    cd_cfg = tmp_path / "containerd-config.toml"
    cd_cfg.write_text(
        "version = 2\n"
        '[plugins."io.containerd.grpc.v1.cri".registry]\n'
        f"  config_path = {json.dumps(str(certs))}\n"
    )
    proc = isolated(
        "--containerd-config", str(cd_cfg), "pull", f"{HARBOR}/team/app:3", namespace=namespace
    )
    assert_pulled(proc, containerd, namespace, f"{HARBOR}/team/app:3", tiny.digest)
    assert sorted(ctr_image_digests(containerd, namespace)) == [
        f"{HARBOR}/team/app:1",
        f"{HARBOR}/team/app:2",
        f"{HARBOR}/team/app:3",
    ]

    # the same version 3 layout
    cd_cfg.write_text(
        "version = 3\n"
        '[plugins."io.containerd.cri.v1.images".registry]\n'
        f"  config_path = {json.dumps(str(certs))}\n"
    )
    out = assert_ok(
        isolated("--containerd-config", str(cd_cfg), "hosts", HARBOR, "--format", "json")
    )
    doc = json.loads(out)
    assert doc["HostsDirs"][0] == str(certs)
    assert doc["Endpoints"][0]["URL"] == f"https://{tls_registry.host}/v2"


def test_without_configuration_the_name_does_not_resolve(
    containerd: Containerd, namespace: str, isolated: PyctlRunner, tmp_path: Path, empty_cri: str
) -> None:
    """Control for the test above: with an empty hosts dir ``harbor.local`` is a real DNS
    name that does not exist."""
    (tmp_path / "empty").mkdir()
    proc = isolated(
        *with_hosts(tmp_path / "empty", empty_cri),
        "pull",
        f"{HARBOR}/team/app:1",
        namespace=namespace,
    )
    assert_error(proc, f"pull {HARBOR}/team/app:1", HARBOR, stdout=None)
    assert_not_pulled(containerd, namespace)


# --- mirrors --------------------------------------------------------------------------------------


def test_mirror_fall_through_dead_then_empty_then_server(
    containerd: Containerd,
    namespace: str,
    isolated: PyctlRunner,
    registry: Registry,
    tiny: Archive,
    tmp_path: Path,
    empty_cri: str,
) -> None:
    """A mirror that refuses connections, then a mirror without the image, then the server:
    the pull succeeds from the server."""
    seed(registry, "team/app", tiny, "1")
    dead = free_port()
    with Registry() as empty, FaultProxy(empty) as empty_proxy, FaultProxy(registry) as server:
        certs = hosts_toml(
            tmp_path / "certs.d",
            HARBOR,
            f'server = "{server.url}"\n'
            f'[host."http://127.0.0.1:{dead}"]\n  capabilities = ["pull", "resolve"]\n'
            f'[host."{empty_proxy.url}"]\n  capabilities = ["pull", "resolve"]\n',
        )
        proc = isolated(
            *with_hosts(certs, empty_cri), "pull", f"{HARBOR}/team/app:1", namespace=namespace
        )
        assert_pulled(proc, containerd, namespace, f"{HARBOR}/team/app:1", tiny.digest)
        # the empty mirror was asked (404) and served nothing
        asked = empty_proxy.requests_for()
        assert asked and {r.status for r in asked} == {404}
        assert server.manifest_requests() and server.blob_gets() >= 1

        # pyctl hosts lists them in that order, with the file they come from
        doc = json.loads(
            assert_ok(
                isolated(
                    *with_hosts(certs, empty_cri),
                    "hosts",
                    f"{HARBOR}/team/app:1",
                    "--format",
                    "json",
                )
            )
        )
        eps = doc["Endpoints"]
        assert [e["URL"] for e in eps] == [
            f"http://127.0.0.1:{dead}/v2",
            f"{empty_proxy.url}/v2",
            f"{server.url}/v2",
        ]
        assert [e["Role"] for e in eps] == ["mirror", "mirror", "registry"]
        assert eps[0]["Capabilities"] == ["pull", "resolve"]
        assert eps[2]["Capabilities"] == ["pull", "push", "referrers", "resolve"]
        assert {e["Source"] for e in eps} == {str(certs / HARBOR / "hosts.toml")}


def test_default_hosts_toml_applies_to_an_unconfigured_host(
    containerd: Containerd,
    namespace: str,
    isolated: PyctlRunner,
    fault_proxy: FaultProxy,
    tiny: Archive,
    tmp_path: Path,
    empty_cri: str,
) -> None:
    seed(fault_proxy, "team/app", tiny, "1")
    fault_proxy.clear()
    certs = hosts_toml(tmp_path / "certs.d", "_default", f'server = "{fault_proxy.url}"\n')
    ref = "unconfigured.example:5000/team/app:1"
    proc = isolated(*with_hosts(certs, empty_cri), "pull", ref, namespace=namespace)
    assert_pulled(proc, containerd, namespace, ref, tiny.digest)
    assert fault_proxy.manifest_requests()
    # a host that has its own directory does not use _default
    hosts_toml(certs, "other.example", 'server = "http://127.0.0.1:1"\n')
    doc = json.loads(
        assert_ok(
            isolated(*with_hosts(certs, empty_cri), "hosts", "other.example", "--format", "json")
        )
    )
    assert [e["URL"] for e in doc["Endpoints"]] == ["http://127.0.0.1:1/v2"]


def test_ns_query_on_mirror_requests(
    containerd: Containerd,
    namespace: str,
    isolated: PyctlRunner,
    fault_proxy: FaultProxy,
    tiny: Archive,
    tmp_path: Path,
    empty_cri: str,
) -> None:
    """A pull of ``upstream.example:5000/…`` through a mirror: every request to the mirror
    carries ``?ns=upstream.example:5000`` (containerd's isProxy rule)."""
    seed(fault_proxy, "team/app", tiny, "1")
    fault_proxy.clear()
    upstream = "upstream.example:5000"
    certs = hosts_toml(
        tmp_path / "certs.d",
        upstream,
        f'[host."{fault_proxy.url}"]\n  capabilities = ["pull", "resolve"]\n',
    )
    ref = f"{upstream}/team/app:1"
    proc = isolated(*with_hosts(certs, empty_cri), "pull", ref, namespace=namespace)
    assert_pulled(proc, containerd, namespace, ref, tiny.digest)
    reqs = fault_proxy.requests_for()
    assert reqs and fault_proxy.manifest_requests() and fault_proxy.blob_gets() >= 2
    for r in reqs:
        assert r.query_params.get("ns") == [upstream], r.target

    # and not when the proxy is pulled from under its own name
    fault_proxy.clear()
    own = fault_proxy.ref("team/app", "1")
    proc = isolated(*with_hosts(certs, empty_cri), "pull", own, namespace=namespace)
    assert_pulled(proc, containerd, namespace, own, tiny.digest)
    assert fault_proxy.requests_for()
    assert all("ns" not in r.query_params for r in fault_proxy.requests_for())


class _PrefixHandler(_ProxyHandler):
    """Serves the registry's API under ``/prefix``: ``/prefix/v2/X`` and ``/prefix/X`` both
    go to ``/v2/X``; anything else gets a 404 (so a client that ignores the prefix fails)."""

    def _handle(self) -> None:
        owner = self.server.owner
        assert isinstance(owner, PrefixProxy)
        owner.seen.append(self.path)
        split = urllib.parse.urlsplit(self.path)
        path = split.path
        if path.startswith("/prefix/v2/") or path == "/prefix/v2":
            path = path[len("/prefix") :]
        elif path.startswith("/prefix/"):
            path = "/v2/" + path[len("/prefix/") :]
        else:
            path = "/not-under-prefix" + path
        self.path = urllib.parse.urlunsplit(("", "", path, split.query, ""))
        super()._handle()


class PrefixProxy(FaultProxy):
    def __init__(self, upstream: Registry) -> None:
        super().__init__(upstream)
        self.handler = _PrefixHandler
        self.seen: list[str] = []


def test_path_prefix_and_override_path(
    containerd: Containerd,
    namespace: str,
    isolated: PyctlRunner,
    registry: Registry,
    tiny: Archive,
    tmp_path: Path,
    empty_cri: str,
) -> None:
    """``[host."http://H/prefix"]`` means API root ``/prefix/v2``; with ``override_path =
    true`` the path is the API root itself (``/prefix/<repo>/manifests/<tag>``)."""
    seed(registry, "team/app", tiny, "1", "2")
    with PrefixProxy(registry) as proxy:
        certs = tmp_path / "certs.d"
        hosts_toml(
            certs,
            "override.example",
            f'[host."{proxy.url}/prefix"]\n'
            '  capabilities = ["pull", "resolve"]\n'
            "  override_path = true\n",
        )
        hosts_toml(
            certs,
            "prefixed.example",
            f'[host."{proxy.url}/prefix"]\n  capabilities = ["pull", "resolve"]\n',
        )
        ref = "override.example/team/app:1"
        proc = isolated(*with_hosts(certs, empty_cri), "--debug", "pull", ref, namespace=namespace)
        assert_pulled(proc, containerd, namespace, ref, tiny.digest)
        assert proxy.seen
        assert all(p.startswith("/prefix/team/app/") for p in proxy.seen), proxy.seen
        assert any(p.startswith("/prefix/team/app/manifests/1?") for p in proxy.seen), proxy.seen
        assert f"{proxy.url}/prefix/team/app/manifests/1?ns=override.example" in proc.stderr

        proxy.seen.clear()
        ref = "prefixed.example/team/app:2"
        proc = isolated(*with_hosts(certs, empty_cri), "pull", ref, namespace=namespace)
        assert_pulled(proc, containerd, namespace, ref, tiny.digest)
        assert proxy.seen
        assert all(p.startswith("/prefix/v2/team/app/") for p in proxy.seen), proxy.seen

        doc = json.loads(
            assert_ok(
                isolated(
                    *with_hosts(certs, empty_cri), "hosts", "override.example", "--format", "json"
                )
            )
        )
        assert doc["Endpoints"][0]["Path"] == "/prefix"
        assert doc["Endpoints"][0]["Namespace"] == "override.example"


# --- TLS ------------------------------------------------------------------------------------------


def test_ca_from_hosts_toml_versus_unknown_ca(
    containerd: Containerd,
    namespace: str,
    isolated: PyctlRunner,
    tls_registry: SecureRegistry,
    tiny: Archive,
    tmp_path: Path,
    empty_cri: str,
) -> None:
    seed(tls_registry, "team/app", tiny, "1")
    ref = f"{HARBOR}/team/app:1"
    other_ca = CertAuthority(tmp_path / "other-ca")

    def pull_with(hosts_text: str, **files: bytes) -> subprocess.CompletedProcess[str]:
        root = tmp_path / f"certs-{len(list(tmp_path.glob('certs-*')))}"
        hosts_toml(root, HARBOR, hosts_text, **files)
        return isolated(*with_hosts(root, empty_cri), "pull", ref, namespace=namespace)

    server = f'server = "https://{tls_registry.host}"\n'
    # no CA at all: the system trust store does not know the test CA
    msg = assert_error(pull_with(server), "x509", "certificate", tls_registry.host, stdout=None)
    assert "hosts.toml" in msg or "--insecure-registry" in msg
    assert_not_pulled(containerd, namespace)
    # the wrong CA
    assert_error(
        pull_with(server + 'ca = "other.crt"\n', **{"other.crt": other_ca.pem}),
        "x509",
        "certificate",
        stdout=None,
    )
    assert_not_pulled(containerd, namespace)
    # a CA file that does not exist: named in the error
    msg = assert_error(pull_with(server + 'ca = "missing.crt"\n'), "missing.crt", stdout=None)
    assert "CA" in msg
    assert_not_pulled(containerd, namespace)
    # the right CA, absolute path, in a list after the wrong one
    proc = pull_with(
        server + f'ca = ["other.crt", {json.dumps(str(tls_registry.ca_path))}]\n',
        **{"other.crt": other_ca.pem},
    )
    assert_pulled(proc, containerd, namespace, ref, tiny.digest)


def test_skip_verify_and_insecure_registry(
    containerd: Containerd,
    namespace: str,
    isolated: PyctlRunner,
    tls_registry: SecureRegistry,
    registry: Registry,
    tiny: Archive,
    tmp_path: Path,
    empty_cri: str,
) -> None:
    seed(tls_registry, "team/app", tiny, "1", "2")
    seed(registry, "team/app", tiny, "3")
    certs = hosts_toml(
        tmp_path / "certs.d",
        HARBOR,
        f'server = "https://{tls_registry.host}"\nskip_verify = true\n',
    )
    ref = f"{HARBOR}/team/app:1"
    proc = isolated(*with_hosts(certs, empty_cri), "pull", ref, namespace=namespace)
    assert_pulled(proc, containerd, namespace, ref, tiny.digest)

    # --insecure-registry: the same server without skip_verify (and without a CA)
    plain = hosts_toml(tmp_path / "plain.d", HARBOR, f'server = "https://{tls_registry.host}"\n')
    ref = f"{HARBOR}/team/app:2"
    proc = isolated(
        *with_hosts(plain, empty_cri), "--insecure-registry", "pull", ref, namespace=namespace
    )
    assert_pulled(proc, containerd, namespace, ref, tiny.digest)

    # --insecure-registry also allows plain HTTP for a server written without a scheme
    http = hosts_toml(tmp_path / "http.d", "plain.example", f'server = "{registry.host}"\n')
    ref = "plain.example/team/app:3"
    args = ["--hosts-dir", str(http), "--containerd-config", empty_cri]
    no_tls = isolated(*args, "pull", ref, namespace=namespace)
    assert_error(no_tls, registry.host, "TLS", "--insecure-registry", stdout=None)
    assert ref not in ctr_image_digests(containerd, namespace)
    proc = isolated(*args, "--insecure-registry", "pull", ref, namespace=namespace)
    assert_pulled(proc, containerd, namespace, ref, tiny.digest)


def test_docker_style_certs_dir(
    containerd: Containerd,
    namespace: str,
    isolated: PyctlRunner,
    tls_registry: SecureRegistry,
    mtls_registry: SecureRegistry,
    tiny: Archive,
    empty_cri: str,
) -> None:
    """``<certs.d>/127.0.0.1:PORT/{ca.crt,client.cert,client.key}`` without a hosts.toml."""
    mtls_registry.seed(tiny, "team/app", "1")
    seed(tls_registry, "team/app", tiny, "1")
    for reg in (tls_registry, mtls_registry):
        ref = reg.ref("team/app", "1")
        proc = isolated(*with_hosts(reg.certs_d, empty_cri), "pull", ref, namespace=namespace)
        assert_pulled(proc, containerd, namespace, ref, tiny.digest)

    doc = json.loads(
        assert_ok(
            isolated(
                *with_hosts(mtls_registry.certs_d, empty_cri),
                "hosts",
                mtls_registry.host,
                "--format",
                "json",
            )
        )
    )
    (ep,) = doc["Endpoints"]
    d = mtls_registry.cert_dir
    assert ep["CA"] == [str(d / "ca.crt")]
    assert ep["ClientCerts"] == [{"Cert": str(d / "client.cert"), "Key": str(d / "client.key")}]
    assert ep["Source"] == str(d)


def test_mtls_without_client_certificate(
    containerd: Containerd,
    namespace: str,
    isolated: PyctlRunner,
    mtls_registry: SecureRegistry,
    tiny: Archive,
    tmp_path: Path,
    empty_cri: str,
) -> None:
    mtls_registry.seed(tiny, "team/app", "1")
    certs = tmp_path / "certs.d"
    (certs / mtls_registry.host).mkdir(parents=True)
    shutil.copyfile(mtls_registry.cert_dir / "ca.crt", certs / mtls_registry.host / "ca.crt")
    ref = mtls_registry.ref("team/app", "1")
    proc = isolated(*with_hosts(certs, empty_cri), "pull", ref, namespace=namespace)
    msg = assert_error(proc, "client certificate", mtls_registry.host, stdout=None)
    assert "Traceback" not in proc.stderr
    assert "client =" in msg or ".cert" in msg
    assert_not_pulled(containerd, namespace)

    # the same through hosts.toml "client" (a [cert, key] pair) works
    client = mtls_registry.client_cert
    assert client is not None
    (certs / mtls_registry.host / "hosts.toml").write_text(
        'ca = "ca.crt"\n'
        f"client = [[{json.dumps(str(client.cert))}, {json.dumps(str(client.key))}]]\n"
    )
    proc = isolated(*with_hosts(certs, empty_cri), "pull", ref, namespace=namespace)
    assert_pulled(proc, containerd, namespace, ref, tiny.digest)


# --- bad configuration ----------------------------------------------------------------------------


MALFORMED = {
    "toml": ('server = "https://x\n', "invalid TOML"),
    "capability": ('[host."https://m.example"]\n  capabilities = ["pull", "fly"]\n', "fly"),
    "type": ('skip_verify = "yes"\n', "skip_verify"),
    "scheme": ('server = "ftp://x.example"\n', "ftp://x.example"),
    "client": ('client = [["a.cert", "b.key", "c"]]\n', "client"),
}


def test_malformed_hosts_toml(
    containerd: Containerd, namespace: str, isolated: PyctlRunner, tmp_path: Path, empty_cri: str
) -> None:
    """A broken hosts.toml stops pull and hosts with one line naming the file (containerd
    would log it and silently fall back to defaults)."""
    cases: list[tuple[tuple[str, str], list[str]]] = []
    for name, (text, fragment) in MALFORMED.items():
        certs = hosts_toml(tmp_path / name, HARBOR, text)
        hosts_file = str(certs / HARBOR / "hosts.toml")
        for args in (["pull", f"{HARBOR}/team/app:1"], ["hosts", HARBOR]):
            cases.append(((hosts_file, fragment), [*with_hosts(certs, empty_cri), *args]))
    run_many(
        isolated,
        cases,
        lambda want, proc: assert_error(proc, *want, stdout=None),
        namespace=namespace,
    )
    assert_not_pulled(containerd, namespace)


def test_malformed_containerd_config(isolated: PyctlRunner, tmp_path: Path) -> None:
    cd_cfg = tmp_path / "config.toml"
    cd_cfg.write_text("version = 2\n[plugins\n")
    proc = isolated("--containerd-config", str(cd_cfg), "hosts", "docker.io")
    assert_error(proc, str(cd_cfg), "invalid TOML")


def test_named_containerd_config_that_does_not_exist(isolated: PyctlRunner, tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "config.toml"
    proc = isolated("--containerd-config", str(missing), "hosts", "docker.io")
    assert_error(proc, str(missing), "no such file", "--containerd-config")


# --- pyctl hosts ----------------------------------------------------------------------------------


def test_hosts_shows_a_missing_credential_helper(
    isolated: PyctlRunner, tmp_path: Path, empty_cri: str
) -> None:
    (tmp_path / "empty").mkdir()
    docker = Path(isolated.base_env["DOCKER_CONFIG"])
    (docker / "config.json").write_text(json.dumps({"credsStore": "pyctl-test-absent"}))
    doc = hosts_json(isolated, *with_hosts(tmp_path / "empty", empty_cri), "hosts", "example.test")
    (endpoint,) = doc["Endpoints"]
    assert endpoint["Host"] == "example.test"
    assert endpoint["Credentials"].startswith("unavailable: credential helper")
    assert "docker-credential-pyctl-test-absent not found in PATH" in endpoint["Credentials"]


def test_hosts_defaults(isolated: PyctlRunner, tmp_path: Path, empty_cri: str) -> None:
    (tmp_path / "empty").mkdir()
    base = [*with_hosts(tmp_path / "empty", empty_cri), "hosts"]
    hub, familiar, loop, table, other, bad = run_all(
        isolated,
        [
            [*base, "docker.io/library/busybox", "--format", "json"],
            [*base, "busybox", "--format", "json"],
            [*base, "127.0.0.1:5000", "--format", "json"],
            [*base, "localhost:5000/app:1"],
            [*base, "example.com:5000", "--format", "json"],
            [*base, "library/BusyBox"],
        ],
    )

    doc = json.loads(assert_ok(hub))
    assert (doc["Registry"], doc["Image"]) == ("docker.io", "docker.io/library/busybox:latest")
    (ep,) = doc["Endpoints"]
    assert ep["URL"] == "https://registry-1.docker.io/v2"
    assert (ep["Scheme"], ep["Host"], ep["Path"]) == ("https", "registry-1.docker.io", "/v2")
    assert ep["Capabilities"] == ["pull", "push", "referrers", "resolve"]
    assert ep["SkipVerify"] is False and ep["HTTPFallback"] is False
    assert ep["Namespace"] == "" and ep["CA"] == [] and ep["ClientCerts"] == []
    assert ep["Credentials"] == "none (anonymous)" and ep["Source"] == "default"
    assert json.loads(assert_ok(familiar))["Endpoints"] == doc["Endpoints"]

    loop_doc = json.loads(assert_ok(loop))
    assert loop_doc["Image"] == ""  # a host, not an image
    (ep,) = loop_doc["Endpoints"]
    assert ep["URL"] == "https://127.0.0.1:5000/v2"
    assert ep["HTTPFallback"] is True and ep["SkipVerify"] is True
    text = assert_ok(table)
    assert "Registry: localhost:5000\nImage: localhost:5000/app:1\n" in text
    assert "1. https://localhost:5000/v2  (registry)" in text
    assert "plain HTTP: allowed as a fallback" in text

    (ep,) = json.loads(assert_ok(other))["Endpoints"]
    assert ep["URL"] == "https://example.com:5000/v2" and ep["HTTPFallback"] is False

    # an invalid reference is one line
    assert_error(bad, "hosts library/BusyBox")


def test_hosts_explains_everything(
    isolated: PyctlRunner, tmp_path: Path, empty_cri: str, cert_authority: CertAuthority
) -> None:
    certs = hosts_toml(
        tmp_path / "certs.d",
        HARBOR,
        'server = "https://registry.example:8443"\n'
        'ca = "ca.crt"\n'
        '[header]\n  X-Server = "s"\n'
        '[host."https://mirror.example/us"]\n'
        '  capabilities = ["pull", "resolve"]\n'
        '  ca = ["/etc/mirror-ca.pem"]\n'
        '  client = [["client.cert", "client.key"]]\n'
        "  skip_verify = true\n"
        '  [host."https://mirror.example/us".header]\n'
        '    X-Mirror = ["a", "b"]\n'
        '[host."http://plain.example:5000"]\n'
        '  capabilities = ["pull"]\n',
        **{"ca.crt": cert_authority.pem},
    )
    docker = Path(isolated.base_env["DOCKER_CONFIG"])
    secret = "s3cr3t-password"
    auth = {
        "auths": {
            HARBOR: auth_entry("hank", secret),
            "mirror.example": {"identitytoken": "tok-" + secret},
        }
    }
    (docker / "config.json").write_text(json.dumps(auth))
    args = [*with_hosts(certs, empty_cri), "hosts"]
    doc = hosts_json(isolated, *args, f"{HARBOR}/team/app:1")
    hosts_file = str(certs / HARBOR / "hosts.toml")
    assert doc["Registry"] == HARBOR
    assert doc["HostsDirs"] == [str(certs)]
    assert doc["DockerConfig"] == str(docker / "config.json")
    eps = doc["Endpoints"]
    assert [e["Order"] for e in eps] == [1, 2, 3]
    mirror, plain, server = eps
    assert mirror == {
        "Order": 1,
        "Role": "mirror",
        "URL": "https://mirror.example/us/v2",
        "Scheme": "https",
        "Host": "mirror.example",
        "Path": "/us/v2",
        "Capabilities": ["pull", "resolve"],
        "CA": ["/etc/mirror-ca.pem"],
        "ClientCerts": [
            {"Cert": str(certs / HARBOR / "client.cert"), "Key": str(certs / HARBOR / "client.key")}
        ],
        "SkipVerify": True,
        "HTTPFallback": False,
        "Headers": {"X-Mirror": ["a", "b"]},
        "Namespace": HARBOR,
        "Credentials": f"identity token from {docker / 'config.json'}",
        "Source": hosts_file,
    }
    assert (plain["Scheme"], plain["Host"], plain["Path"]) == ("http", "plain.example:5000", "/v2")
    assert plain["Capabilities"] == ["pull"] and plain["HTTPFallback"] is False
    assert plain["Credentials"] == "none (anonymous)"
    assert server["Role"] == "registry"
    assert server["URL"] == "https://registry.example:8443/v2"
    assert server["CA"] == [str(certs / HARBOR / "ca.crt")]
    assert server["Headers"] == {"X-Server": ["s"]}
    assert server["Credentials"] == f"user hank from {docker / 'config.json'}"
    assert server["Source"] == hosts_file

    table = assert_ok(isolated(*args, HARBOR))
    assert secret not in table
    assert "1. https://mirror.example/us/v2  (mirror)" in table
    assert "skip_verify: true" in table
    assert "header: X-Mirror: a, b" in table
    assert f"from: {hosts_file}" in table
    assert f"requests add ?ns={HARBOR}" in table
    assert secret not in json.dumps(doc)


def test_hosts_dir_order_first_match_wins(
    isolated: PyctlRunner, tmp_path: Path, empty_cri: str
) -> None:
    first = hosts_toml(tmp_path / "first", "_default", 'server = "https://first.example"\n')
    second = hosts_toml(tmp_path / "second", HARBOR, 'server = "https://second.example"\n')
    doc = hosts_json(
        isolated, "--hosts-dir", str(first), *with_hosts(second, empty_cri), "hosts", HARBOR
    )
    # _default of the first directory matches before the second directory is searched
    assert [e["Host"] for e in doc["Endpoints"]] == ["first.example"]
    doc = hosts_json(
        isolated, "--hosts-dir", str(second), *with_hosts(first, empty_cri), "hosts", HARBOR
    )
    assert [e["Host"] for e in doc["Endpoints"]] == ["second.example"]
    # HOST_PORT_ spelling of a directory
    hosts_toml(tmp_path / "ported", "reg.example_5000_", 'server = "https://ported.example"\n')
    doc = hosts_json(
        isolated, *with_hosts(tmp_path / "ported", empty_cri), "hosts", "reg.example:5000"
    )
    assert [e["Host"] for e in doc["Endpoints"]] == ["ported.example"]


# --- legacy CRI registry section ------------------------------------------------------------------


def test_cri_legacy_mirrors_and_auth(
    containerd: Containerd,
    namespace: str,
    isolated: PyctlRunner,
    basic_registry: SecureRegistry,
    registry: Registry,
    tiny: Archive,
    tmp_path: Path,
) -> None:
    """``registry.mirrors."mirror.test".endpoint`` + ``registry.configs."HOST".auth``/``tls``
    of containerd's config, with no config.json: the pull authenticates with the CRI
    credentials."""
    seed(basic_registry, "team/app", tiny, "1", creds=basic_registry.creds())
    seed(registry, "team/app", tiny, "2")
    cri = '[plugins."io.containerd.grpc.v1.cri".registry'
    cd_cfg = tmp_path / "containerd.toml"
    cd_cfg.write_text(
        "version = 2\n"
        f'{cri}.mirrors."mirror.test"]\n'
        f'  endpoint = ["https://{basic_registry.host}"]\n'
        f'{cri}.mirrors."plain.test"]\n'
        f'  endpoint = ["http://{registry.host}"]\n'
        f'{cri}.configs."{basic_registry.host}".auth]\n'
        '  username = "testuser"\n'
        '  password = "testpassword"\n'
        f'{cri}.configs."{basic_registry.host}".tls]\n'
        f"  ca_file = {json.dumps(str(basic_registry.ca_path))}\n"
    )
    (tmp_path / "empty").mkdir()
    base = ["--containerd-config", str(cd_cfg)]
    ref = "mirror.test/team/app:1"
    proc = isolated(*base, "pull", ref, namespace=namespace)
    assert_pulled(proc, containerd, namespace, ref, tiny.digest)
    ref2 = "plain.test/team/app:2"
    proc = isolated(*base, "pull", ref2, namespace=namespace)
    assert_pulled(proc, containerd, namespace, ref2, tiny.digest)

    doc = hosts_json(isolated, *base, "hosts", ref)
    mirror = doc["Endpoints"][0]
    assert mirror["URL"] == f"https://{basic_registry.host}/v2"
    assert mirror["Source"] == str(cd_cfg)
    assert mirror["CA"] == [str(basic_registry.ca_path)]
    assert mirror["Credentials"] == f"user testuser from CRI config {cd_cfg}"
    assert "testpassword" not in json.dumps(doc)
    assert doc["Endpoints"][-1]["Host"] == "mirror.test"

    # a config_path turns the legacy section off (containerd does the same)
    with cd_cfg.open("a") as f:
        f.write(f"{cri}]\n  config_path = {json.dumps(str(tmp_path / 'empty'))}\n")
    doc = hosts_json(isolated, *base, "hosts", ref)
    assert [e["Host"] for e in doc["Endpoints"]] == ["mirror.test"]


def test_cri_legacy_credentials_wrong_password(
    containerd: Containerd,
    namespace: str,
    isolated: PyctlRunner,
    basic_registry: SecureRegistry,
    tiny: Archive,
    tmp_path: Path,
) -> None:
    seed(basic_registry, "team/app", tiny, "1", creds=basic_registry.creds())
    cri = '[plugins."io.containerd.grpc.v1.cri".registry'
    cd_cfg = tmp_path / "containerd.toml"
    cd_cfg.write_text(
        "version = 2\n"
        f'{cri}.configs."{basic_registry.host}".auth]\n'
        '  username = "testuser"\n'
        '  password = "wrong"\n'
    )
    ref = basic_registry.ref("team/app", "1")
    proc = isolated("--containerd-config", str(cd_cfg), "pull", ref, namespace=namespace)
    msg = assert_error(proc, f"pull {ref}", stdout=None)
    assert re.search(r"unauthorized|authentication", msg), msg
    assert "wrong" not in msg
    assert_not_pulled(containerd, namespace)
