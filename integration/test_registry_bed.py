"""Proof that the registry-side test bed works: token auth, basic auth, TLS, mutual TLS and
the fault-injecting proxy — exercised with skopeo (a real Go client) and requests."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
from pathlib import Path

import pytest
import requests

from integration.conftest import SecureRegistry
from integration.faultproxy import FaultProxy
from integration.images import Archive
from integration.registry_helpers import Skopeo
from integration.testbed import CertAuthority, Registry, TokenAuth
from integration.tokenserver import decode_jwt, libtrust_key_id, parse_scope

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


# --- helpers ------------------------------------------------------------------------------------


@pytest.fixture
def sk(tmp_path: Path) -> Skopeo:
    """conftest's ``sk`` with a minute per command (the bed's own checks are small)."""
    return Skopeo(tmp_path, timeout=60)


def _biggest_layer(archive: Archive) -> tuple[str, int]:
    layer = archive.single.biggest_layer
    return layer.digest, layer.size


@pytest.fixture
def pushed(registry: Registry, busybox_image: Archive, sk: Skopeo) -> Archive:
    """busybox pushed straight into the plain ``registry`` as ``library/busybox:latest``."""
    sk(
        "copy",
        "--dest-tls-verify=false",
        f"oci-archive:{busybox_image.path}",
        f"docker://{registry.ref('library/busybox')}",
    )
    return busybox_image


def _raw_get(host: str, target: str, timeout: float = 10.0) -> tuple[bytes, BaseException | None]:
    """Send a bare HTTP/1.1 GET and read until EOF or error: (bytes read, error)."""
    hostname, port = host.rsplit(":", 1)
    got = b""
    with socket.create_connection((hostname, int(port)), timeout=timeout) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    return got, None
                got += data
        except OSError as e:
            return got, e


def _split_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


# --- token auth ---------------------------------------------------------------------------------


def test_token_challenge_points_at_token_server(token_registry: SecureRegistry) -> None:
    ts = token_registry.token_server
    assert ts.realm.startswith("https://127.0.0.1:") and ts.realm.endswith("/token")
    r = requests.get(
        f"{token_registry.url}/v2/library/x/tags/list",
        verify=str(token_registry.ca_path),
        timeout=10,
    )
    assert r.status_code == 401
    challenge = r.headers["WWW-Authenticate"]
    assert challenge == (
        f'Bearer realm="{ts.realm}",service="{ts.service}",scope="repository:library/x:pull"'
    )
    # the token server is HTTPS with a certificate from the same CA
    t = requests.get(
        ts.realm,
        params={"service": ts.service, "scope": "repository:library/x:pull"},
        auth=("bob", "builder"),
        verify=str(token_registry.ca_path),
        timeout=10,
    )
    assert t.status_code == 200
    body = t.json()
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == 300 and body["issued_at"].endswith("Z")
    header, claims = decode_jwt(body["token"])
    assert header == {"typ": "JWT", "alg": "RS256", "kid": ts.key_id}
    assert re.fullmatch(r"([A-Z2-7]{4}:){11}[A-Z2-7]{4}", ts.key_id)
    assert claims["iss"] == ts.issuer and claims["aud"] == ts.service and claims["sub"] == "bob"
    assert claims["nbf"] <= claims["iat"] < claims["exp"] and claims["jti"]
    assert claims["access"] == [{"type": "repository", "name": "library/x", "actions": ["pull"]}]
    assert ts.verify(body["token"])["sub"] == "bob"
    # the registry accepts it: 404 (repo unknown) instead of 401
    r2 = requests.get(
        f"{token_registry.url}/v2/library/x/tags/list",
        headers={"Authorization": f"Bearer {body['token']}"},
        verify=str(token_registry.ca_path),
        timeout=10,
    )
    assert r2.status_code == 404, r2.text
    assert r2.json()["errors"][0]["code"] == "NAME_UNKNOWN"


def test_skopeo_push_pull_with_token_auth(
    token_registry: SecureRegistry, busybox_image: Archive, sk: Skopeo
) -> None:
    ts = token_registry.token_server
    cert_dir = str(token_registry.cert_dir)
    dest = f"docker://{token_registry.ref('team/app', 'v1')}"
    sk(
        "copy",
        "--dest-creds",
        token_registry.creds("alice"),
        "--dest-cert-dir",
        cert_dir,
        f"oci-archive:{busybox_image.path}",
        dest,
    )
    pushes = [r for r in ts.token_requests() if any("push" in s for s in r.scopes)]
    assert pushes, ts.requests
    for r in pushes:
        assert r.username == "alice" and r.has_authorization and r.auth_scheme == "basic"
        assert r.status == 200 and r.service == ts.service
        assert any(re.fullmatch(r"repository:team/app:(pull,push|push,pull)", g) for g in r.granted)
    assert "wonderland" not in repr(ts.requests)  # no secrets recorded

    raw = sk(
        "inspect", "--raw", "--creds", token_registry.creds("alice"), "--cert-dir", cert_dir, dest
    ).stdout
    assert hashlib.sha256(raw.encode()).hexdigest() == busybox_image.digest.split(":", 1)[1]
    # Registry.request / tags() use an admin token minted by TokenAuth.headers()
    assert token_registry.tags("team/app") == ["v1"]
    assert token_registry.catalog() == ["team/app"]

    # bob may pull ...
    out = sk("inspect", "--creds", token_registry.creds("bob"), "--cert-dir", cert_dir, dest)
    assert json.loads(out.stdout)["Digest"] == busybox_image.digest
    # ... but not push
    ts.clear()
    denied = sk(
        "copy",
        "--dest-creds",
        token_registry.creds("bob"),
        "--dest-cert-dir",
        cert_dir,
        f"oci-archive:{busybox_image.path}",
        f"docker://{token_registry.ref('team/bobs', 'v1')}",
        check=False,
    )
    assert denied.returncode != 0
    assert re.search(r"denied|unauthorized|authentication required", denied.stderr, re.I), (
        denied.stderr
    )
    assert ts.requests and all(r.username == "bob" for r in ts.requests)
    assert all("push" not in g for r in ts.requests for g in r.granted)

    # anonymous: a token without access -> the registry keeps saying 401
    ts.clear()
    anon = sk("inspect", "--no-creds", "--cert-dir", cert_dir, dest, check=False)
    assert anon.returncode != 0
    assert re.search(r"unauthorized|authentication required", anon.stderr, re.I), anon.stderr
    assert ts.requests and all(not r.has_authorization for r in ts.requests)
    assert all(r.granted == () and r.subject == "" for r in ts.requests)

    # wrong password -> 401 from the token server
    ts.clear()
    bad = sk("inspect", "--creds", "alice:nope", "--cert-dir", cert_dir, dest, check=False)
    assert bad.returncode != 0
    assert ts.requests and {r.status for r in ts.requests} == {401}


def test_token_server_oauth_post_and_refresh(token_registry: SecureRegistry) -> None:
    ts = token_registry.token_server
    ca = str(token_registry.ca_path)
    form = {
        "grant_type": "password",
        "username": "alice",
        "password": "wonderland",
        "service": ts.service,
        "client_id": "pyctl",
        "access_type": "offline",
        "scope": "repository:a/b:pull,push repository:c:pull",
    }
    r = requests.post(ts.realm, data=form, verify=ca, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"access_token", "expires_in", "issued_at", "scope", "refresh_token"}
    assert body["scope"] == "repository:a/b:pull,push repository:c:pull"
    refresh = body["refresh_token"]

    r = requests.post(
        ts.realm,
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "service": ts.service,
            "client_id": "pyctl",
            "scope": "repository:c:pull",
        },
        verify=ca,
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert "refresh_token" not in r.json()
    _, claims = decode_jwt(r.json()["access_token"])
    assert claims["sub"] == "alice"
    tags = requests.get(
        f"{token_registry.url}/v2/c/tags/list",
        headers={"Authorization": f"Bearer {r.json()['access_token']}"},
        verify=ca,
        timeout=10,
    )
    assert tags.status_code == 404  # authorized; repo does not exist

    # GET login with offline_token=true (docker login) also returns a refresh token
    g = requests.get(
        ts.realm,
        params={"service": ts.service, "offline_token": "true", "client_id": "docker"},
        auth=("bob", "builder"),
        verify=ca,
        timeout=10,
    )
    assert g.status_code == 200 and g.json()["refresh_token"]

    bad = requests.post(ts.realm, data={**form, "password": "x"}, verify=ca, timeout=10)
    assert bad.status_code == 401
    bad = requests.post(
        ts.realm, data={"grant_type": "refresh_token", "refresh_token": "nope"}, verify=ca
    )
    assert bad.status_code == 401
    assert requests.post(ts.realm, data={"grant_type": "magic"}, verify=ca).status_code == 400

    reqs = ts.token_requests()
    assert [(r.method, r.grant_type, r.status) for r in reqs] == [
        ("POST", "password", 200),
        ("POST", "refresh_token", 200),
        ("GET", None, 200),
        ("POST", "password", 401),
        ("POST", "refresh_token", 401),
        ("POST", "magic", 400),
    ]
    assert reqs[0].scopes == ("repository:a/b:pull,push", "repository:c:pull")
    assert reqs[0].offline and reqs[0].refresh_token_issued and reqs[0].client_id == "pyctl"
    assert reqs[2].offline and reqs[2].username == "bob" and reqs[2].client_id == "docker"
    text = repr(reqs)
    assert "wonderland" not in text and refresh not in text and "builder" not in text

    ts.fail_next(503)
    assert requests.get(ts.realm, verify=ca, timeout=10).status_code == 503
    assert requests.get(ts.realm, verify=ca, timeout=10).status_code == 200


def test_token_verification_rules(tmp_path: Path) -> None:
    """What distribution 2.8 checks: x5c header accepted too, issuer/audience/expiry."""
    auth = TokenAuth(users={"u": "p"}, header="x5c", public_repos=["pub/*"])
    with Registry(auth=auth) as reg:
        ts = auth.server
        assert ts is not None
        url = f"{reg.url}/v2/pub/a/tags/list"
        anon = requests.get(ts.realm, params={"scope": "repository:pub/a:pull,push"}, timeout=5)
        token = anon.json()["token"]
        header, claims = decode_jwt(token)
        assert "x5c" in header and "kid" not in header
        assert claims["access"] == [{"type": "repository", "name": "pub/a", "actions": ["pull"]}]

        def status(tok: str) -> int:
            return requests.get(
                url, headers={"Authorization": f"Bearer {tok}"}, timeout=5
            ).status_code

        acc = parse_scope("repository:pub/a:pull")
        assert status(token) == 404
        assert status(ts.issue("u", acc)) == 404
        assert status(ts.issue("u", acc, audience="other")) == 401
        assert status(ts.issue("u", acc, issuer="other")) == 401
        assert status(ts.issue("u", acc, expires_in=-120)) == 401  # 60 s leeway
        assert status(ts.issue("u", parse_scope("repository:pub/b:pull"))) == 401
        assert status(token[:-4] + "AAAA") == 401  # bad signature
        # the kid is the libtrust ID of the key in rootcertbundle
        from cryptography import x509

        cert = x509.load_pem_x509_certificate(ts.cert_path.read_bytes())
        assert libtrust_key_id(cert.public_key()) == ts.key_id


# --- basic auth, TLS, mutual TLS ----------------------------------------------------------------


def test_basic_registry_with_skopeo(
    basic_registry: SecureRegistry, busybox_image: Archive, sk: Skopeo
) -> None:
    cert_dir = str(basic_registry.cert_dir)
    dest = f"docker://{basic_registry.ref('basic/bb')}"
    assert basic_registry.creds() == "testuser:testpassword"
    sk(
        "copy",
        "--dest-creds",
        basic_registry.creds(),
        "--dest-cert-dir",
        cert_dir,
        f"oci-archive:{busybox_image.path}",
        dest,
    )
    out = sk("inspect", "--creds", basic_registry.creds(), "--cert-dir", cert_dir, dest).stdout
    assert json.loads(out)["Digest"] == busybox_image.digest
    anon = sk("inspect", "--no-creds", "--cert-dir", cert_dir, dest, check=False)
    assert anon.returncode != 0 and re.search(r"unauthorized|authentication", anon.stderr, re.I)
    r = requests.get(f"{basic_registry.url}/v2/", verify=str(basic_registry.ca_path), timeout=5)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == 'Basic realm="pyctl-test-registry"'
    assert basic_registry.tags("basic/bb") == ["latest"]


def test_tls_registry(tls_registry: SecureRegistry, busybox_image: Archive, sk: Skopeo) -> None:
    ca_path = tls_registry.ca_path
    assert ca_path is not None
    assert (tls_registry.cert_dir / "ca.crt").read_bytes() == ca_path.read_bytes()
    assert tls_registry.cert_dir.parent == tls_registry.certs_d
    assert tls_registry.cert_dir.name == tls_registry.host
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{tls_registry.url}/v2/", timeout=5)  # not trusted by default
    r = requests.get(f"{tls_registry.url}/v2/", verify=str(tls_registry.ca_path), timeout=5)
    assert r.status_code == 200
    dest = f"docker://{tls_registry.ref('tls/bb')}"
    sk(
        "copy",
        "--dest-cert-dir",
        str(tls_registry.cert_dir),
        f"oci-archive:{busybox_image.path}",
        dest,
    )
    assert tls_registry.tags("tls/bb") == ["latest"]
    fails = sk("inspect", "--no-creds", dest, check=False)  # system trust store only
    assert fails.returncode != 0 and "certificate" in fails.stderr


def test_mtls_registry(
    mtls_registry: SecureRegistry,
    cert_authority: CertAuthority,
    busybox_image: Archive,
    sk: Skopeo,
    tmp_path: Path,
) -> None:
    client = mtls_registry.client_cert
    assert client is not None and client.ca == cert_authority.cert_path
    ca = str(mtls_registry.ca_path)
    url = f"{mtls_registry.url}/v2/"
    with pytest.raises(requests.exceptions.SSLError, match=r"(?i)certificate.required|alert"):
        requests.get(url, verify=ca, timeout=5)
    # a cert from another CA is refused as well
    other = CertAuthority(tmp_path / "other-ca").issue_client_cert()
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url, verify=ca, cert=(str(other.cert), str(other.key)), timeout=5)
    r = requests.get(url, verify=ca, cert=(str(client.cert), str(client.key)), timeout=5)
    assert r.status_code == 200
    assert "client didn't provide a certificate" in mtls_registry.log_tail(200)

    assert sorted(os.listdir(mtls_registry.cert_dir)) == ["ca.crt", "client.cert", "client.key"]
    dest = f"docker://{mtls_registry.ref('mtls/bb')}"
    sk(
        "copy",
        "--dest-cert-dir",
        str(mtls_registry.cert_dir),
        f"oci-archive:{busybox_image.path}",
        dest,
    )
    assert mtls_registry.tags("mtls/bb") == ["latest"]
    ca_only = tmp_path / "ca-only"
    ca_only.mkdir()
    (ca_only / "ca.crt").write_bytes(cert_authority.pem)
    fails = sk("inspect", "--no-creds", "--cert-dir", str(ca_only), dest, check=False)
    assert fails.returncode != 0 and "certificate" in fails.stderr


# --- fault proxy --------------------------------------------------------------------------------


def test_proxy_forwards_push_and_pull(
    fault_proxy: FaultProxy,
    registry: Registry,
    busybox_image: Archive,
    sk: Skopeo,
    tmp_path: Path,
) -> None:
    spec = busybox_image.single
    dest = f"docker://{fault_proxy.ref('via/proxy')}"
    sk("copy", "--dest-tls-verify=false", f"oci-archive:{busybox_image.path}", dest)
    assert registry.tags("via/proxy") == ["latest"]
    # every upload went through the proxy (Location rewritten to point back at it)
    blobs = [spec.config.digest, *spec.layer_digests]
    assert sorted(fault_proxy.uploaded_digests()) == sorted(blobs)
    assert fault_proxy.blob_upload_starts("via/proxy") == len(blobs)
    assert fault_proxy.blob_uploads(spec.config.digest) == 1
    posts = fault_proxy.requests_for("POST", r"/blobs/uploads/$")
    assert all(r.location and r.location.startswith(fault_proxy.url) for r in posts)
    assert [r.status for r in fault_proxy.manifest_requests("PUT")] == [201]

    fault_proxy.clear()
    sk("copy", "--src-tls-verify=false", dest, f"oci:{tmp_path / 'layout'}:x")
    assert fault_proxy.blob_get_counts() == {d: 1 for d in blobs}
    assert all(r.range is None and not r.has_authorization for r in fault_proxy.blob_requests())


def test_proxy_status_fault_once(fault_proxy: FaultProxy) -> None:
    f = fault_proxy.status(503, headers={"Retry-After": "1"})
    r1 = requests.get(f"{fault_proxy.url}/v2/", timeout=5)
    assert r1.status_code == 503 and r1.headers["Retry-After"] == "1"
    assert r1.json()["errors"][0]["code"] == "UNAVAILABLE"
    r2 = requests.get(f"{fault_proxy.url}/v2/", timeout=5)
    assert r2.status_code == 200
    assert r2.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    assert f.fired == 1 and f.seen == 1
    assert [(r.status, r.fault) for r in fault_proxy.requests] == [(503, "status"), (200, None)]

    # nth occurrence, matched by method + path; every time with times=None
    g = fault_proxy.status(429, method="GET", path=r"/tags/list$", nth=2, times=None)
    url = f"{fault_proxy.url}/v2/x/tags/list"
    codes = [requests.get(url, timeout=5).status_code for _ in range(3)]
    assert codes == [404, 429, 429]
    assert requests.head(url, timeout=5).status_code == 405  # HEAD does not match
    assert g.fired == 2
    fault_proxy.clear_faults()
    assert requests.get(url, timeout=5).status_code == 404


def test_proxy_truncate_and_resume(fault_proxy: FaultProxy, pushed: Archive) -> None:
    digest, size = _biggest_layer(pushed)
    assert size > 100_000
    target = f"/v2/library/busybox/blobs/{digest}"
    fault_proxy.truncate(10_000, path=r"/blobs/sha256:")
    raw, err = _raw_get(fault_proxy.host, target)
    assert err is None  # clean EOF (FIN) ...
    status, headers, body = _split_response(raw)
    assert status == 200 and headers["content-length"] == str(size)  # ... full length promised
    assert len(body) == 10_000

    fault_proxy.truncate(5_000, path=r"/blobs/sha256:")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(fault_proxy.url + target, timeout=10).content  # noqa: B018
    # resume with Range from what we have
    r = requests.get(fault_proxy.url + target, headers={"Range": "bytes=5000-"}, timeout=10)
    assert r.status_code == 206 and len(r.content) == size - 5000
    assert fault_proxy.ranges(digest) == [None, None, "bytes=5000-"]
    assert fault_proxy.blob_gets(digest) == 3
    reqs = fault_proxy.blob_requests(digest)
    assert [r.body_bytes_out for r in reqs] == [10_000, 5_000, size - 5000]


def test_proxy_reset(fault_proxy: FaultProxy, pushed: Archive) -> None:
    digest, size = _biggest_layer(pushed)
    target = f"/v2/library/busybox/blobs/{digest}"
    fault_proxy.reset(1000, path="/blobs/")
    raw, err = _raw_get(fault_proxy.host, target)
    assert isinstance(err, ConnectionResetError), (err, len(raw))
    assert raw.startswith(b"HTTP/1.1 200")
    fault_proxy.reset(-1, path="/blobs/")  # before any byte
    raw, err = _raw_get(fault_proxy.host, target)
    assert isinstance(err, ConnectionResetError) and raw == b""
    fault_proxy.reset(4096)
    with pytest.raises(requests.exceptions.ChunkedEncodingError, match="reset"):
        requests.get(fault_proxy.url + target, timeout=10).content  # noqa: B018
    assert len(requests.get(fault_proxy.url + target, timeout=10).content) == size


def test_proxy_stall_corrupt_wrong_length_replace(fault_proxy: FaultProxy, pushed: Archive) -> None:
    digest, size = _biggest_layer(pushed)
    url = f"{fault_proxy.url}/v2/library/busybox/blobs/{digest}"

    fault_proxy.stall(2.0, after_bytes=100)
    t0 = time.monotonic()
    with pytest.raises(requests.exceptions.ConnectionError, match=r"(?i)timed out"):
        requests.get(url, timeout=(5, 0.3)).content  # noqa: B018
    assert time.monotonic() - t0 < 1.5
    fault_proxy.stall(0.4, before_headers=True)
    t0 = time.monotonic()
    r = requests.get(url, timeout=5)
    assert time.monotonic() - t0 >= 0.4 and len(r.content) == size

    fault_proxy.corrupt(1234)
    body = requests.get(url, timeout=5).content
    assert len(body) == size and "sha256:" + hashlib.sha256(body).hexdigest() != digest

    fault_proxy.wrong_length(+10)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(url, timeout=5).content  # noqa: B018
    fault_proxy.wrong_length(-10)
    r = requests.get(url, timeout=5)
    assert r.headers["Content-Length"] == str(size - 10) and len(r.content) == size - 10

    # a manifest whose bytes do not match its digest
    mdigest = pushed.digest
    murl = f"{fault_proxy.url}/v2/library/busybox/manifests/latest"
    fault_proxy.replace_body(b'{"schemaVersion":2}', path="/manifests/", method="GET")
    r = requests.get(murl, headers={"Accept": OCI_MANIFEST}, timeout=5)
    assert r.content == b'{"schemaVersion":2}'
    assert r.headers["Docker-Content-Digest"] == mdigest
    assert r.headers["Content-Type"] == OCI_MANIFEST
    assert (
        requests.get(murl, headers={"Accept": OCI_MANIFEST}, timeout=5).headers[
            "Docker-Content-Digest"
        ]
        == "sha256:"
        + hashlib.sha256(
            requests.get(murl, headers={"Accept": OCI_MANIFEST}, timeout=5).content
        ).hexdigest()
    )

    fault_proxy.head_ok_get_404()
    assert requests.head(url, timeout=5).status_code == 200
    r = requests.get(url, timeout=5)
    assert r.status_code == 404 and r.json()["errors"][0]["code"] == "BLOB_UNKNOWN"


def test_proxy_redirects(
    fault_proxy: FaultProxy,
    blob_host: FaultProxy,
    pushed: Archive,
    sk: Skopeo,
    tmp_path: Path,
) -> None:
    digest, size = _biggest_layer(pushed)
    path = f"/v2/library/busybox/blobs/{digest}"
    secret = {"Authorization": "Bearer not-for-the-cdn"}

    # requests drops Authorization on a redirect to another port ...
    fault_proxy.redirect(blob_host.url, path="/blobs/")
    r = requests.get(fault_proxy.url + path, headers=secret, timeout=10)
    assert r.status_code == 200 and len(r.content) == size
    assert r.history[0].status_code == 302
    assert r.history[0].headers["Location"] == blob_host.url + path
    first = fault_proxy.blob_requests(digest)[0]
    assert first.has_authorization and first.auth_scheme == "bearer" and first.status == 302
    assert first.headers["Authorization"] == "Bearer <redacted>"
    assert blob_host.blob_gets(digest) == 1
    assert not blob_host.blob_requests(digest)[0].has_authorization
    # ... and to another host name
    fault_proxy.redirect(blob_host.url_for("localhost") + "/", path="/blobs/")
    r = requests.get(fault_proxy.url + path, headers=secret, timeout=10)
    assert r.status_code == 200 and not blob_host.authorization_seen()
    assert blob_host.blob_requests(digest)[-1].headers["Host"] == f"localhost:{blob_host.port}"

    # a Go client (skopeo) follows blob redirects as well
    fault_proxy.redirect(blob_host.url_for("localhost"), path="/blobs/", times=None)
    blob_host.clear()
    sk(
        "copy",
        "--src-tls-verify=false",
        f"docker://{fault_proxy.ref('library/busybox')}",
        f"oci:{tmp_path / 'layout'}:x",
    )
    assert set(blob_host.blob_get_counts()) == {
        pushed.single.config.digest,
        *pushed.single.layer_digests,
    }
    fault_proxy.clear_faults()

    loop = fault_proxy.redirect_loop(path="/blobs/")
    with pytest.raises(requests.exceptions.TooManyRedirects):
        requests.get(fault_proxy.url + path, timeout=10)
    assert loop.fired == 31  # requests: 30 redirects max, then gives up


def test_proxy_in_front_of_token_registry_redirect_drops_auth(
    token_registry: SecureRegistry,
    blob_host: FaultProxy,
    pushed: Archive,
    sk: Skopeo,
    tmp_path: Path,
) -> None:
    """A Go client (skopeo) pulling through a proxy in front of the HTTPS token registry;
    blobs redirected to a CDN-like host (same blobs, plain registry) on another port of
    127.0.0.1: Authorization reaches the proxy but not the blob host."""
    sk(
        "copy",
        "--dest-creds",
        token_registry.creds("alice"),
        "--dest-cert-dir",
        str(token_registry.cert_dir),
        f"oci-archive:{pushed.path}",
        f"docker://{token_registry.ref('library/busybox')}",
    )
    with FaultProxy(token_registry) as proxy:
        assert proxy.upstream == token_registry.url and proxy.upstream_ca == token_registry.ca_path
        proxy.redirect(blob_host.url, path="/blobs/", times=None)
        sk(
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            token_registry.creds("bob"),
            f"docker://{proxy.ref('library/busybox')}",
            f"oci:{tmp_path / 'layout'}:x",
        )
        redirected = proxy.blob_requests()
        assert redirected and all(r.status == 302 for r in redirected)
        assert all(r.has_authorization and r.auth_scheme == "bearer" for r in redirected)
        assert blob_host.blob_gets() == len(redirected)
        assert not blob_host.authorization_seen()
