"""The registry client's HTTP layers without servers: a fake transport answers each request,
so auth flows (Basic, Bearer with tokens by scope), retries, redirects and the HTTPS → HTTP
fallback are driven and checked request by request."""

from __future__ import annotations

import io
import json
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from urllib3 import exceptions as u3
from urllib3.response import HTTPResponse

from pyctl.errors import RegistryError, RegistryUnreachable
from pyctl.oci import Descriptor, sha256_digest
from pyctl.registry import retry
from pyctl.registry.credentials import Credential
from pyctl.registry.distribution import Repository
from pyctl.registry.hosts.model import ALL_CAPABILITIES, RegistryHost
from pyctl.registry.transport import Failure, Response, SentRequest, classify, redact_headers

REALM = "https://auth.example/token"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@dataclass
class Sent:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return urllib.parse.urlsplit(self.url).path

    @property
    def query(self) -> dict[str, list[str]]:
        return urllib.parse.parse_qs(urllib.parse.urlsplit(self.url).query)

    @property
    def netloc(self) -> str:
        return urllib.parse.urlsplit(self.url).netloc


Answer = tuple[int, Mapping[str, str], bytes]
Handler = Callable[[Sent], Answer]


@dataclass
class FakeSessions:
    """The fake transport: every request is recorded and answered by ``handler`` (which may
    raise a network error instead)."""

    handler: Handler
    sent: list[Sent] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def for_host(self, host: RegistryHost) -> FakeSessions:
        return self

    def close(self) -> None:
        pass

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        timeout: tuple[float, float],
        body: bytes | Iterable[bytes] | None = None,
    ) -> Response:
        data = body if isinstance(body, bytes) else b"".join(body or [])
        sent = Sent(method, url, dict(headers), data)
        with self.lock:
            self.sent.append(sent)
        status, answer_headers, content = self.handler(sent)
        raw = HTTPResponse(
            body=io.BytesIO(b"" if method == "HEAD" else content),
            headers=dict(answer_headers),
            status=status,
            preload_content=False,
            request_method=method,
        )
        return Response(raw, SentRequest(method, headers), url)

    def to(self, netloc: str, path: str = "") -> list[Sent]:
        return [s for s in self.sent if s.netloc == netloc and path in s.path]


@pytest.fixture(autouse=True)
def no_sleeping(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(retry.time, "sleep", slept.append)
    return slept


def endpoint(host: str = "reg.example", scheme: str = "https", **kw: Any) -> RegistryHost:
    return RegistryHost(scheme, host, "/v2", ALL_CAPABILITIES, **kw)


def repo(
    handler: Handler,
    *,
    hosts: list[RegistryHost] | None = None,
    cred: Credential | None = None,
    push: bool = False,
    name: str = "team/app",
) -> tuple[Repository, FakeSessions]:
    fake = FakeSessions(handler)
    hosts = hosts or [endpoint()]
    r = Repository(
        "reg.example",
        name,
        hosts,
        lambda _host: cred,
        push=push,
        sessions=fake,  # type: ignore[arg-type]
    )
    return r, fake


MANIFEST = b'{"schemaVersion": 2}'
DIGEST = sha256_digest(MANIFEST)
FOUND: Answer = (
    200,
    {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": DIGEST, "Content-Length": "20"},
    MANIFEST,
)


def bearer_registry(
    tokens: list[Sent], *, wants: Callable[[Sent], set[str]] | None = None
) -> Handler:
    """A registry whose token server grants what is asked; a request passes with a token
    holding every scope ``wants`` says it needs (by default: pull on the repository)."""

    def handler(sent: Sent) -> Answer:
        if sent.url.startswith(REALM):
            tokens.append(sent)
            scopes = sorted(s for v in sent.query.get("scope", []) for s in v.split())
            return 200, {}, json.dumps({"token": " ".join(scopes)}).encode()
        needed = wants(sent) if wants else {"repository:team/app:pull"}
        auth = sent.headers.get("Authorization", "")
        granted = set(auth.removeprefix("Bearer ").split()) if auth.startswith("Bearer ") else set()
        if not needed <= granted:
            challenge = f'Bearer realm="{REALM}",service="reg",scope="{" ".join(sorted(needed))}"'
            if granted:
                challenge += ',error="insufficient_scope"'
            return 401, {"WWW-Authenticate": challenge}, b""
        if sent.path.endswith("/blobs/uploads/"):
            return 201, {}, b""
        return FOUND

    return handler


# --- auth -------------------------------------------------------------------------------------


def test_bearer_token_for_the_request_scope_fetched_once() -> None:
    tokens: list[Sent] = []
    r, fake = repo(bearer_registry(tokens))
    assert r.resolve("latest")[0].digest == DIGEST
    assert r.resolve("1.0")[0].digest == DIGEST
    assert [t.query["scope"] for t in tokens] == [["repository:team/app:pull"]]
    assert tokens[0].query["service"] == ["reg"]
    # one anonymous try, then a token for every later request
    registry = fake.to("reg.example")
    assert "Authorization" not in registry[0].headers
    assert all(s.headers["Authorization"].startswith("Bearer ") for s in registry[1:])


def test_mounts_each_ask_for_their_own_source_alone() -> None:
    """Concurrent mounts from different repositories: each token request carries the push
    scope and the pull scope of its own source, nothing of the others'."""
    tokens: list[Sent] = []

    def wants(sent: Sent) -> set[str]:
        need = {"repository:team/app:pull,push"}
        if "from" in sent.query:
            need.add(f"repository:{sent.query['from'][0]}:pull")
        return need

    r, fake = repo(bearer_registry(tokens, wants=wants), push=True)
    host = r.push_host()
    assert r.blob_exists(host, DIGEST)  # the host's challenge is known from here on
    sources = [f"team/src-{i}" for i in range(12)]
    results: dict[str, bool] = {}
    barrier = threading.Barrier(len(sources))

    def mount(source: str) -> None:
        barrier.wait()
        results[source] = r.mount_blob(host, "sha256:" + "a" * 64, source)

    threads = [threading.Thread(target=mount, args=(s,)) for s in sources]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == dict.fromkeys(sources, True)
    mount_scopes = [set(t.query["scope"]) for t in tokens[1:]]
    assert sorted(mount_scopes, key=sorted) == sorted(
        ({"repository:team/app:pull,push", f"repository:{s}:pull"} for s in sources), key=sorted
    )
    mounts = [s for s in fake.sent if "mount" in s.query]
    assert len(mounts) == len(sources)  # every mount went through at its first try


def test_a_wider_scope_the_registry_asks_for_is_asked_again_next_time() -> None:
    """The registry wants pull on another repository too (insufficient_scope): the request is
    sent again with a token for both, and the next request asks for both at once."""
    tokens: list[Sent] = []
    both = {"repository:team/app:pull", "repository:team/base:pull"}
    r, fake = repo(bearer_registry(tokens, wants=lambda _s: both))
    r.resolve("latest")
    r.resolve("latest")
    assert [sorted(t.query["scope"]) for t in tokens] == [sorted(both)]
    assert len(fake.to("reg.example")) == 3  # anonymous, then two with the token


def test_denied_scope_is_final_and_says_denied() -> None:
    def handler(sent: Sent) -> Answer:
        if sent.url.startswith(REALM):
            return 200, {}, b'{"token": "pull-only"}'
        challenge = f'Bearer realm="{REALM}",scope="repository:team/app:pull,push"'
        if "Authorization" in sent.headers:
            challenge += ',error="insufficient_scope"'
        return 401, {"WWW-Authenticate": challenge}, b""

    r, fake = repo(handler, cred=Credential("bob", "builder"), push=True)
    with pytest.raises(RegistryError, match="denied: requested access to the resource is denied"):
        r.blob_exists(r.push_host(), DIGEST)
    assert len(fake.to("reg.example")) == 2  # no second token for the same scopes


def test_basic_auth_and_a_refused_password() -> None:
    def handler(sent: Sent) -> Answer:
        if sent.headers.get("Authorization") == Credential("u", "right").basic_authorization():
            return FOUND
        return 401, {"WWW-Authenticate": 'Basic realm="r"'}, b""

    r, fake = repo(handler, cred=Credential("u", "right"))
    assert r.resolve("latest")[0].digest == DIGEST
    assert [("Authorization" in s.headers) for s in fake.sent] == [False, True]
    wrong, fake = repo(handler, cred=Credential("u", "wrong"))
    with pytest.raises(RegistryError) as info:
        wrong.resolve("latest")
    assert "the credentials for reg.example were refused: run pyctl login reg.example" in str(
        info.value
    )
    assert len(fake.sent) == 2  # anonymous, then once with the password
    anonymous, _ = repo(handler)
    with pytest.raises(RegistryError, match=r"no credentials for reg\.example: run pyctl login"):
        anonymous.resolve("latest")


def test_a_401_without_a_challenge_is_not_retried_forever() -> None:
    """A host whose Basic challenge is known, with no credentials for it, answering 401 with
    no WWW-Authenticate: asked again at most as often as any 401 allows, then an error."""
    challenge = {"WWW-Authenticate": 'Basic realm="r"'}

    def handler(sent: Sent) -> Answer:
        if len(fake.sent) > 20:
            raise AssertionError("the same request over and over")
        return 401, challenge if len(fake.sent) == 1 else {}, b""

    r, fake = repo(handler)
    with pytest.raises(RegistryError, match=r"no credentials for reg\.example"):
        r.resolve("latest")  # learns the Basic challenge
    with pytest.raises(RegistryError):
        r.resolve("latest")
    assert len(fake.sent) <= 4


def test_basic_credentials_stay_off_plain_http() -> None:
    def handler(sent: Sent) -> Answer:
        return 401, {"WWW-Authenticate": 'Basic realm="r"'}, b""

    r, fake = repo(handler, hosts=[endpoint(scheme="https")], cred=Credential("u", "p"))
    r.sender._plain_http.add("reg.example")  # as after a fall-back to plain HTTP
    with pytest.raises(RegistryError, match=r"refusing to send credentials to reg\.example"):
        r.resolve("latest")
    assert not any("Authorization" in s.headers for s in fake.sent)


def test_token_server_refusal_names_the_registry() -> None:
    def handler(sent: Sent) -> Answer:
        if sent.url.startswith(REALM):
            return 401, {}, b""
        return 401, {"WWW-Authenticate": f'Bearer realm="{REALM}"'}, b""

    r, fake = repo(handler, cred=Credential("u", "p"))
    with pytest.raises(RegistryError, match="the token server refused the credentials"):
        r.resolve("latest")
    token_requests = [s for s in fake.sent if s.url.startswith(REALM)]
    assert [s.method for s in token_requests] == ["POST", "GET"]  # OAuth2, then the GET
    assert "u:p" not in token_requests[0].body.decode()  # a form, not Basic in the body
    assert token_requests[1].headers["Authorization"] == Credential("u", "p").basic_authorization()


def test_a_mirror_without_the_image_costs_one_request_and_is_explained_on_failure() -> None:
    """Only when no endpoint has the image is each asked what exactly is missing."""
    missing: Answer = (404, {}, b'{"errors": [{"code": "MANIFEST_UNKNOWN"}]}')
    tags: Answer = (200, {}, b'{"name": "team/app", "tags": ["1"]}')

    def handler(sent: Sent) -> Answer:
        if sent.path.endswith("/tags/list"):
            return tags
        return missing if sent.netloc == "mirror.example" else FOUND

    hosts = [endpoint("mirror.example"), endpoint()]
    r, fake = repo(handler, hosts=hosts)
    assert r.resolve("latest") == (
        Descriptor(OCI_MANIFEST, DIGEST, 20),
        hosts[1],
    )
    assert [(s.method, s.path) for s in fake.to("mirror.example")] == [
        ("HEAD", "/v2/team/app/manifests/latest")
    ]
    r, fake = repo(lambda sent: tags if sent.path.endswith("/tags/list") else missing, hosts=hosts)
    with pytest.raises(RegistryError) as info:
        r.resolve("latest")
    assert str(info.value) == (
        "tag latest not found in repository team/app at https://mirror.example (its tags: 1); "
        "tag latest not found in repository team/app at https://reg.example (its tags: 1)"
    )


# --- retries ---------------------------------------------------------------------------------


def test_5xx_is_retried_with_retry_after(no_sleeping: list[float]) -> None:
    answers = iter([(503, {"Retry-After": "2"}, b""), (502, {}, b""), FOUND])
    r, fake = repo(lambda _s: next(answers))
    assert r.resolve("latest")[0].digest == DIGEST
    assert len(fake.sent) == 3
    assert no_sleeping[0] == 2.0 and 0 < no_sleeping[1] <= 0.4


def test_gives_up_after_five_attempts() -> None:
    r, fake = repo(lambda _s: (503, {}, b""))
    with pytest.raises(RegistryError, match=r"\(gave up after 5 attempts\)"):
        r.blob_exists(r.hosts[0], DIGEST)
    assert len(fake.sent) == 5


def test_a_failing_mirror_gives_way_at_once_the_server_is_retried() -> None:
    def handler(sent: Sent) -> Answer:
        if sent.netloc == "mirror.example":
            raise ConnectionRefusedError(111, "Connection refused")
        if len([s for s in fake.sent if s.netloc == "reg.example"]) < 3:
            raise ConnectionResetError(104, "Connection reset by peer")
        return FOUND

    mirror = endpoint("mirror.example", is_mirror=True)
    r, fake = repo(handler, hosts=[mirror, endpoint()])
    assert r.resolve("latest")[1].host == "reg.example"
    assert [s.netloc for s in fake.sent] == ["mirror.example"] + ["reg.example"] * 3


def test_tls_failures_are_not_retried_and_name_the_fix() -> None:
    def handler(sent: Sent) -> Answer:
        exc = ssl.SSLCertVerificationError(1, "certificate verify failed")
        exc.verify_code = 20
        raise u3.SSLError(exc) from exc

    r, fake = repo(handler)
    with pytest.raises(RegistryUnreachable) as info:
        r.resolve("latest")
    assert str(info.value).startswith(
        "x509: unable to get local issuer certificate for reg.example"
    )
    assert len(fake.sent) == 1


def test_https_falls_back_to_http_where_allowed() -> None:
    def handler(sent: Sent) -> Answer:
        if sent.url.startswith("https://"):
            exc = ssl.SSLError(1, "wrong version number")
            exc.reason = "WRONG_VERSION_NUMBER"  # type: ignore[misc]
            raise u3.SSLError(exc) from exc
        return FOUND

    r, fake = repo(handler, hosts=[endpoint(http_fallback=True)])
    r.resolve("latest")
    r.resolve("latest")
    assert [s.url.split(":")[0] for s in fake.sent] == ["https", "http", "http"]
    strict, _ = repo(handler)
    with pytest.raises(RegistryUnreachable, match="does not speak TLS"):
        strict.resolve("latest")


def test_token_requests_are_not_retried() -> None:
    def handler(sent: Sent) -> Answer:
        if sent.url.startswith(REALM):
            return 503, {}, b""
        return 401, {"WWW-Authenticate": f'Bearer realm="{REALM}"'}, b""

    r, fake = repo(handler)
    with pytest.raises(RegistryError, match="token server: "):
        r.resolve("latest")
    assert len([s for s in fake.sent if s.url.startswith(REALM)]) == 1


# --- redirects -------------------------------------------------------------------------------


def test_redirects_carry_no_credentials_or_headers_to_another_host() -> None:
    blob = b"layer bytes"
    desc = Descriptor("application/octet-stream", sha256_digest(blob), len(blob))

    def handler(sent: Sent) -> Answer:
        if sent.netloc == "cdn.example":
            return 200, {}, blob
        if "Authorization" not in sent.headers:
            return 401, {"WWW-Authenticate": 'Basic realm="r"'}, b""
        if "/blobs/" in sent.path:
            return 307, {"Location": "https://cdn.example/blob?sig=1"}, b""
        return FOUND

    host = endpoint(headers={"X-Team": ("blue",)})
    r, fake = repo(handler, hosts=[host], cred=Credential("u", "p"))
    assert b"".join(r.open_blob(desc)) == blob
    [cdn] = fake.to("cdn.example")
    assert "Authorization" not in cdn.headers and "X-Team" not in cdn.headers
    assert fake.to("reg.example")[-1].headers["X-Team"] == "blue"


def test_a_redirect_loop_ends() -> None:
    def handler(sent: Sent) -> Answer:
        return 302, {"Location": sent.url}, b""

    r, fake = repo(handler)
    with pytest.raises(RegistryError, match="stopped after 10 redirects"):
        r.blob_exists(r.hosts[0], DIGEST)
    assert len(fake.sent) == retry.MAX_REDIRECTS + 1


def test_a_broken_blob_read_resumes_with_range() -> None:
    blob = bytes(range(256)) * 4096  # 1 MiB
    desc = Descriptor("application/octet-stream", sha256_digest(blob), len(blob))

    class Cut(io.BytesIO):
        def read(self, n: int | None = -1) -> bytes:
            data = super().read(n if n is not None and n >= 0 else -1)
            if not data:
                raise u3.ProtocolError("Connection broken", ConnectionResetError(104, "reset"))
            return data

    def handler(sent: Sent) -> Answer:
        start = int(sent.headers.get("Range", "bytes=0-")[6:].rstrip("-"))
        if start == 0:
            return 200, {}, blob[:300_000]  # then the connection breaks (see below)
        return 206, {"Content-Range": f"bytes {start}-{len(blob) - 1}/{len(blob)}"}, blob[start:]

    r, fake = repo(handler)
    real_request = fake.request

    def request(method: str, url: str, **kw: Any) -> Response:
        resp = real_request(method, url, **kw)
        if "Range" not in kw["headers"]:
            resp.raw._fp = Cut(blob[:300_000])  # type: ignore[attr-defined]
        return resp

    fake.request = request  # type: ignore[method-assign]
    assert b"".join(r.open_blob(desc)) == blob
    assert [s.headers.get("Range") for s in fake.sent][1:] == [f"bytes={300_000}-"]


# --- pieces ----------------------------------------------------------------------------------


def test_network_failures_are_classified_by_type() -> None:
    refused = u3.NewConnectionError(None, "Failed to establish a new connection")  # type: ignore[arg-type]
    refused.__cause__ = ConnectionRefusedError(111, "Connection refused")
    assert classify(refused).kind is Failure.REFUSED
    import socket

    unresolved = u3.NameResolutionError("x.invalid", None, socket.gaierror(-2, "Name"))  # type: ignore[arg-type]
    assert classify(unresolved).kind is Failure.UNRESOLVED
    timeout = u3.ConnectTimeoutError(None, "timed out")
    assert classify(timeout).kind is Failure.TIMEOUT
    alert = ssl.SSLError(1, "tlsv13 alert certificate required")
    alert.reason = "TLSV13_ALERT_CERTIFICATE_REQUIRED"  # type: ignore[misc]
    assert classify(u3.SSLError(alert)) == classify(alert)
    assert classify(alert).kind is Failure.CLIENT_CERT
    assert classify(alert).detail == "alert: certificate required"
    assert classify(ssl.SSLEOFError(8, "EOF")).kind is Failure.CLIENT_CERT
    # the words of a message decide nothing
    assert classify(OSError("connection refused, timed out, certificate")).kind is Failure.OTHER


def test_redact_headers() -> None:
    headers = {
        "Authorization": "Bearer eyJhbGciOi.secret",
        "proxy-authorization": "Basic dXNlcjpwYXNz",
        "Cookie": "session=abc",
        "Set-Cookie": "x=y",
        "X-Custom": "keep",
        "Accept": "application/json",
        "AUTHORIZATION": "weird-no-scheme",
    }
    out = redact_headers(headers)
    assert out == {
        "Authorization": "Bearer <redacted>",
        "proxy-authorization": "Basic <redacted>",
        "Cookie": "<redacted>",
        "Set-Cookie": "<redacted>",
        "X-Custom": "keep",
        "Accept": "application/json",
        "AUTHORIZATION": "<redacted>",
    }
    assert headers["Authorization"] == "Bearer eyJhbGciOi.secret"  # input untouched
