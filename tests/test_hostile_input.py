"""Hostile and malformed input, fuzzed with hypothesis: whatever an operator types or a registry
or a config file holds, pyctl answers with a :class:`PyctlError` that has a message — never
another exception type (which the CLI would report as an internal error) and never a hang
(every property runs under a hypothesis deadline).

Covered: image references, platform strings, ``--format`` templates, ``hosts.toml`` files,
docker ``config.json`` files, ``WWW-Authenticate`` headers and token answers (through the real
HTTP client against a local server), manifests / indexes / image configs (bad JSON, wrong
media types, huge sizes and counts, deep nesting, 10,000 layers) through the copy engine's
planner, and the 4 MiB cap on manifest bodies, which holds before anything is parsed.
Archives are fuzzed with the archive code.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import string
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from pyctl.copy import Plan, PlatformFilter, default_filter, plan
from pyctl.errors import ConfigError, FormatError, InvalidReferenceError, PyctlError, RegistryError
from pyctl.oci import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    MAX_MANIFEST_SIZE,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    parse_platform,
    sha256_digest,
)
from pyctl.reference import (
    parse,
    parse_docker_ref,
    parse_normalized_named,
)
from pyctl.registry.credentials import Credential
from pyctl.registry.credentials.docker_config import DockerConfig
from pyctl.registry.distribution import Repository
from pyctl.registry.hosts.hosts_toml import parse_hosts_toml
from pyctl.registry.hosts.model import RegistryHost
from pyctl.registry.hosts.resolve import resolve_hosts
from pyctl.registry.tokens import parse_token_response
from pyctl.render import Formatter

# Every property must finish each example quickly: a slow one is a hang in the making.
FAST = settings(max_examples=300, deadline=500, suppress_health_check=[HealthCheck.too_slow])


def _message_ok(exc: PyctlError) -> None:
    """A PyctlError the CLI can print as one line."""
    assert isinstance(exc, PyctlError)
    assert str(exc).strip(), "empty error message"


# --- references ---------------------------------------------------------------------------------

REF_ALPHABET = string.ascii_letters + string.digits + "-._:/@[]+ \t\n\x00é"
references = (
    st.text(alphabet=REF_ALPHABET, max_size=300)
    | st.text(max_size=80)
    | st.builds(
        lambda host, path, tag, digest: f"{host}{path}{tag}{digest}",
        st.sampled_from(["", "docker.io/", "localhost:5000/", "[::1]:5000/", "a.b/", "A.B:0/"]),
        st.text(alphabet="abc/._-", min_size=0, max_size=40),
        st.sampled_from(["", ":latest", ":v1.2", ":" + "t" * 129, ":-x", ":"]),
        st.sampled_from(
            ["", "@sha256:" + "a" * 64, "@sha256:" + "A" * 64, "@sha512:" + "a" * 128, "@md5:x"]
        ),
    )
)


@FAST
@given(references)
@example("a" * 300 + "!")
@example("a-" * 2000 + "!")
@example(("a" * 30 + ".") * 60 + "/")
@example("sha256:" + "a" * 64)
def test_references_parse_or_raise_invalid_reference(text: str) -> None:
    for fn in (parse, parse_normalized_named, parse_docker_ref):
        try:
            ref = fn(text)
        except InvalidReferenceError as exc:
            _message_ok(exc)
            continue
        # Whatever parses prints back to something that parses to the same reference.
        assert fn(str(ref)) == ref


# --- platforms ----------------------------------------------------------------------------------

platforms = st.text(alphabet="linuxamd64armv78/_ -\x00é", max_size=30) | st.text(max_size=20)


@FAST
@given(st.lists(platforms, max_size=3), st.booleans())
def test_platform_strings_parse_or_raise(specs: list[str], all_platforms: bool) -> None:
    for spec in specs:
        try:
            p = parse_platform(spec)
        except PyctlError as exc:
            _message_ok(exc)
            assert spec in str(exc)
        else:
            assert p.os and p.architecture
    try:
        filt = default_filter(specs, all_platforms)
    except PyctlError as exc:
        _message_ok(exc)
    else:
        assert isinstance(filt, PlatformFilter)


# --- --format templates -------------------------------------------------------------------------

COLUMNS = [("Repository", "REPOSITORY"), ("Tag", "TAG"), ("ID", "IMAGE ID"), ("Size", "SIZE")]
template_pieces = st.sampled_from(
    [
        "{{",
        "}}",
        "{{.Repository}}",
        "{{ .Tag }}",
        "{{json .}}",
        "{{json .Size}}",
        "{{.Nope}}",
        "{{- .ID -}}",
        "{{/* c */}}",
        "{{range .}}",
        "{{end}}",
        "{{if .ID}}",
        '{{printf "%s" .ID}}',
        "{{.}}",
        "{{json}}",
        "{{.ID.Sub}}",
        "{{ }}",
        "table ",
        "json",
        "\\t",
        "\\n",
        "\t",
        " ",
        "x",
        "é",
        "{{.Repository | upper}}",
    ]
)
templates = st.lists(template_pieces, max_size=12).map("".join) | st.text(max_size=60)
row_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@FAST
@given(templates, st.lists(st.dictionaries(st.sampled_from([c for c, _ in COLUMNS]), row_values)))
def test_format_templates_render_or_raise_format_error(
    fmt: str, rows: list[dict[str, object]]
) -> None:
    try:
        formatter = Formatter(fmt, COLUMNS)
        out = formatter.render(rows)
    except FormatError as exc:
        _message_ok(exc)
    else:
        assert isinstance(out, str)


# --- hosts.toml ---------------------------------------------------------------------------------


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v) if not isinstance(v, float) or (v == v and abs(v) != float("inf")) else "nan"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise AssertionError(v)


toml_scalars = (
    st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.text(max_size=30)
    | st.sampled_from(
        [
            "https://mirror.example",
            "http://127.0.0.1:5000",
            "ftp://x",
            "https://u:p@h.example",
            "https://[::1",
            "https://h.example:99999",
            "https://h.example/v2?x=1",
            "pull",
            "resolve",
            "push",
            "3s",
            "-1s",
            "1h-1m",
            "ca.crt",
            "",
            "/etc/passwd",
        ]
    )
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "X-Auth"]), inner, max_size=2)
    ),
    max_leaves=6,
)
HOST_KEYS = [
    "server",
    "capabilities",
    "ca",
    "client",
    "skip_verify",
    "header",
    "override_path",
    "dial_timeout",
    "unknown",
]


@st.composite
def hosts_toml_texts(draw: st.DrawFn) -> str:
    lines = []
    for key in draw(st.lists(st.sampled_from(HOST_KEYS), max_size=4, unique=True)):
        lines.append(f"{key} = {_toml_value(draw(toml_values))}")
    for url in draw(st.lists(toml_scalars.filter(lambda s: isinstance(s, str)), max_size=3)):
        lines.append(f"[host.{json.dumps(url)}]")
        for key in draw(st.lists(st.sampled_from(HOST_KEYS[1:]), max_size=4, unique=True)):
            lines.append(f"  {key} = {_toml_value(draw(toml_values))}")
    text = "\n".join(lines) + "\n"
    if draw(st.booleans()):  # damage it
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.text(alphabet='[]"=\n.#\\ ', max_size=5)) + text[cut:]
    return text


@FAST
@given(hosts_toml_texts() | st.text(max_size=200))
@example('[host."https://m.example"]\n[host."https://m.example".header]\nx = 1\n')
@example('server = "https://x"\n[host]\n"https://y" = 5\n')
@example("host = 5\n")
@example('[[host."https://m"]]\n')
def test_hosts_toml_parses_or_raises_config_error(text: str) -> None:
    try:
        hosts = parse_hosts_toml(text, base_dir="/etc/containerd/certs.d/x", source="hosts.toml")
    except ConfigError as exc:
        _message_ok(exc)
        assert "hosts.toml" in str(exc), "the error must name the file"
        return
    assert hosts and all(isinstance(h, RegistryHost) for h in hosts)


@pytest.mark.parametrize(
    ("header", "bad"),
    [
        ('"X-A" = "a\\r\\nInjected: 1"', "invalid value"),
        ('"X-A" = "a\\u0000"', "invalid value"),
        ('"X-A" = "\\u20ac"', "invalid value"),
        ('"X A" = "v"', "invalid header name"),
        ('"" = "v"', "invalid header name"),
    ],
)
def test_hosts_toml_headers_cannot_inject(header: str, bad: str) -> None:
    text = f'server = "https://r.example"\n[header]\n{header}\n'
    with pytest.raises(ConfigError, match=bad) as info:
        parse_hosts_toml(text, base_dir="", source="hosts.toml")
    assert "Injected" not in str(info.value)  # a header's value may be a secret: never shown


@settings(max_examples=60, deadline=1000)
@given(hosts_toml_texts())
def test_hosts_dir_with_hostile_hosts_toml(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    root = tmp_path_factory.mktemp("certs.d")
    (root / "reg.example").mkdir()
    (root / "reg.example" / "hosts.toml").write_text(text)
    try:
        hosts = resolve_hosts("reg.example", hosts_dirs=[str(root)])
    except ConfigError as exc:
        _message_ok(exc)
        assert str(root / "reg.example" / "hosts.toml") in str(exc)
    else:
        assert hosts[-1].host and hosts[-1].scheme in ("http", "https")


# --- config.json --------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=12,
)
auth_entries = st.dictionaries(
    st.sampled_from(["auth", "username", "password", "identitytoken", "registrytoken", "x"]),
    json_values
    | st.sampled_from(["dXNlcjpwYXNz", "dXNlcg==", "!!!", "", "Og==", "dXNlcjo=", "/w=="]),
    max_size=4,
)
config_docs = st.fixed_dictionaries(
    {},
    optional={
        "auths": st.dictionaries(
            st.sampled_from(["reg.example", "https://reg.example/v1/", "reg.example:443", "x"]),
            auth_entries | json_values,
            max_size=3,
        )
        | json_values,
        "credsStore": json_values | st.just("pyctl-no-such-helper"),
        "credHelpers": st.dictionaries(st.text(max_size=12), json_values, max_size=2) | json_values,
        "other": json_values,
    },
)


@contextlib.contextmanager
def _path_without_helpers(directory: Path) -> Iterator[None]:
    old = os.environ.get("PATH")
    os.environ["PATH"] = str(directory)
    try:
        yield
    finally:
        if old is None:
            del os.environ["PATH"]
        else:
            os.environ["PATH"] = old


@settings(max_examples=300, deadline=500)
@given(
    config_docs.map(lambda d: json.dumps(d).encode())
    | json_values.map(lambda d: json.dumps(d).encode())
    | st.binary(max_size=100)
    | st.sampled_from([b"[" * 100_000, b'{"auths":' * 50_000, b"\xef\xbb\xbf{}", b"\xff"])
)
def test_config_json_loads_or_raises_config_error(
    tmp_path_factory: pytest.TempPathFactory, raw: bytes
) -> None:
    directory = tmp_path_factory.mktemp("docker")
    path = directory / "config.json"
    path.write_bytes(raw)
    with _path_without_helpers(directory):
        try:
            cfg = DockerConfig.load(str(path))
            for host in ("reg.example", "docker.io", "x"):
                cred = cfg.resolve(host)
                assert cred is None or isinstance(cred.username, str)
            cfg.registries()
        except PyctlError as exc:
            _message_ok(exc)
            assert str(path) in str(exc) or "docker-credential-" in str(exc), str(exc)
    # nothing pyctl did while reading changed the file
    assert path.read_bytes() == raw


# --- token answers ------------------------------------------------------------------------------


@FAST
@given(
    st.binary(max_size=200)
    | json_values.map(lambda d: json.dumps(d).encode())
    | st.fixed_dictionaries(
        {},
        optional={
            "token": json_values,
            "access_token": json_values,
            "expires_in": json_values | st.sampled_from([1e400, -1, 0, 10**30]),
            "refresh_token": json_values,
        },
    ).map(lambda d: json.dumps(d).encode())
)
def test_token_answers_parse_or_raise(body: bytes) -> None:
    try:
        token = parse_token_response(body, time.time())
    except PyctlError as exc:
        _message_ok(exc)
    else:
        assert token.token and (token.expires_at is None or token.expires_at > time.time())


# --- a hostile registry, through the real HTTP client ---------------------------------------------


class _Hostile:
    """What the local registry answers: a WWW-Authenticate value for every request and a
    token-server body."""

    def __init__(self) -> None:
        self.challenge: list[str] = []
        self.token_body = b"{}"
        self.answer: tuple[int, dict[str, str], bytes | None] | None = None
        self.endless_token = False
        self.sent = 0
        self.duplicate_length = False


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hostile: _Hostile

    def log_message(self, *args: Any) -> None:
        pass

    def _send(
        self, code: int, headers: Mapping[str, str] | list[tuple[str, str]], body: bytes
    ) -> None:
        self.send_response_only(code)
        items = headers.items() if isinstance(headers, Mapping) else headers
        names = set()
        for k, v in items:
            self.send_header(k, v)
            names.add(k.lower())
        if "content-length" not in names or self.hostile.duplicate_length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        h = self.hostile
        if self.command in ("POST", "PUT"):
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
        if self.path.startswith("/token"):
            if h.endless_token:
                self._endless(200, {"Content-Type": "application/json"})
            else:
                self._send(200, {"Content-Type": "application/json"}, h.token_body)
            return
        if h.answer is not None:
            code, headers, body = h.answer
            if body is None:
                self._endless(code, headers)
            else:
                self._send(code, headers, body)
            return
        headers = [("WWW-Authenticate", v) for v in h.challenge]
        self._send(401, headers, b'{"errors":[{"code":"UNAUTHORIZED","message":"no"}]}')

    def _endless(self, code: int, headers: Mapping[str, str]) -> None:
        """An answer without Content-Length whose body never ends (until 256 MiB)."""
        self.send_response_only(code)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        piece = b"{" * 65536
        with contextlib.suppress(OSError):
            while self.hostile.sent < 64 * MAX_MANIFEST_SIZE:
                self.wfile.write(piece)
                self.hostile.sent += len(piece)
        self.close_connection = True

    do_HEAD = do_GET
    do_POST = do_GET
    do_PUT = do_GET


@pytest.fixture(scope="module")
def hostile_server() -> Iterator[tuple[_Hostile, str]]:
    state = _Hostile()
    handler = type("Handler", (_Handler,), {"hostile": state})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _registry(host: str, cred: Any = None) -> Repository:
    endpoint = RegistryHost(
        scheme="http",
        host=host,
        path="/v2",
        capabilities=frozenset({"pull", "resolve", "push"}),
    )
    c = Credential("user", "secret") if cred else None
    return Repository(host, "team/app", [endpoint], lambda _h: c)


challenge_values = st.lists(
    st.sampled_from(
        [
            'Bearer realm="{server}/token",service="reg",scope="repository:team/app:pull"',
            'Bearer realm="http://[::1",service="x"',
            'Bearer realm="http://",service="x"',
            'Bearer realm="http://h\x00st/token"',
            'Bearer realm="http://127.0.0.1:1/token"',
            'Bearer realm="ftp://x/token"',
            "Bearer realm=",
            "Bearer",
            'Basic realm="r"',
            "Basic",
            "Negotiate abc==",
            'Bearer realm="{server}/token",error="insufficient_scope"',
            "",
            ",,,",
        ]
    )
    | st.text(alphabet='Bearbasic ="/:,\\\x7fé', max_size=40),
    max_size=3,
)
token_bodies = st.sampled_from(
    [
        b'{"token":"t"}',
        b'{"access_token":"a","expires_in":1e400}',
        b"{}",
        b"[]",
        b"not json",
        b'{"token": 5}',
        b"\xff\xfe",
    ]
)


@settings(
    max_examples=80, deadline=3000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(challenge_values, token_bodies, st.booleans())
def test_hostile_auth_challenges_end_in_a_registry_error(
    hostile_server: tuple[_Hostile, str],
    challenge: list[str],
    token_body: bytes,
    with_credentials: bool,
) -> None:
    """Every request answers 401 with these challenges; the token server answers junk. The
    client gives up with one PyctlError — it never crashes, loops or hangs."""
    state, host = hostile_server
    server = f"http://{host}"
    try:
        state.challenge = [c.replace("{server}", server) for c in challenge]
    except UnicodeError:
        assume(False)
    state.token_body = token_body
    state.answer = None
    reg = _registry(host, with_credentials)
    try:
        with pytest.raises(PyctlError) as info:
            reg.resolve("latest")
        _message_ok(info.value)
    finally:
        reg.close()


def test_bodies_are_capped_before_parsing(hostile_server: tuple[_Hostile, str]) -> None:
    """A manifest answer that never ends (no Content-Length, no digest header: the client has
    to hash the body itself) is cut off at 4 MiB; a HEAD announcing more is refused without a
    GET; a descriptor bigger than the cap is refused without a request. Error bodies, answers
    to uploads and token answers that never end are cut off too."""
    state, host = hostile_server
    reg = _registry(host)
    try:
        state.answer = (200, {"Content-Type": OCI_MANIFEST}, None)
        state.sent = 0
        start = time.monotonic()
        with pytest.raises(RegistryError, match=f"larger than {MAX_MANIFEST_SIZE} bytes"):
            reg.resolve("latest")
        assert time.monotonic() - start < 10
        # the client stopped reading soon after the cap, not at the end of the 256 MiB
        assert state.sent < 16 * MAX_MANIFEST_SIZE

        big = str(MAX_MANIFEST_SIZE + 1)
        state.answer = (
            200,
            {
                "Content-Type": OCI_MANIFEST,
                "Docker-Content-Digest": "sha256:" + "a" * 64,
                "Content-Length": big,
            },
            b"",
        )
        with pytest.raises(RegistryError, match="too large"):
            reg.resolve("latest")

        desc = Descriptor(OCI_MANIFEST, "sha256:" + "a" * 64, MAX_MANIFEST_SIZE + 1)
        with pytest.raises(RegistryError, match="too large"):
            reg.fetch_bytes(desc)

        # endless error bodies, answers to a PUT, token answers: read up to a cap, no hang
        json_type = {"Content-Type": "application/json"}
        for call in (
            lambda: reg.fetch_bytes(Descriptor(OCI_CONFIG, "sha256:" + "b" * 64, 10)),
            lambda: reg.put_manifest(reg.hosts[0], "1", desc, b"{}"),
        ):
            for code in (404, 201):
                state.answer = (code, json_type, None)
                state.sent = 0
                start = time.monotonic()
                with pytest.raises(RegistryError):
                    call()
                assert time.monotonic() - start < 10
                assert state.sent < 16 * MAX_MANIFEST_SIZE
        state.answer = None
        state.challenge = [f'Bearer realm="http://{host}/token",service="x"']
        state.endless_token = True
        state.sent = 0
        with pytest.raises(PyctlError, match="token server answer is larger than"):
            reg.resolve("latest")
        assert state.sent < 16 * MAX_MANIFEST_SIZE
        state.endless_token = False

        # a Retry-After that is not a number of seconds (nan) is no crash
        reg.close()
        reg = _registry(host)
        state.answer = (503, {"Retry-After": "nan"}, b"")
        with pytest.raises(RegistryError, match="gave up after 5 attempts"):
            reg.resolve("latest")

        # two Content-Length headers that disagree: an error about the answer, not a crash
        state.duplicate_length = True
        state.answer = (200, {"Content-Type": OCI_MANIFEST, "Content-Length": "5"}, b"{}")
        with pytest.raises(RegistryError, match="Content-Length"):
            reg.resolve("latest")
    finally:
        state.answer = None
        state.duplicate_length = False
        state.endless_token = False
        reg.close()


# --- manifests, indexes, configs ------------------------------------------------------------------

MEDIA_TYPES = [
    OCI_INDEX,
    OCI_MANIFEST,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_LAYER_GZIP,
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/json",
    "text/html",
    "",
]
DIGESTS = [
    "sha256:" + "a" * 64,
    "sha256:" + "A" * 64,
    "sha256:abc",
    "sha512:" + "b" * 128,
    "md5:d41d8cd98f00b204e9800998ecf8427e",
    "../../../../etc/passwd",
    "sha256:" + "a" * 64 + "/../x",
    "",
]
sizes = st.integers(-5, 2**70) | st.sampled_from([1e400, -1e400, 1.5, "12", "x", None, True])
descriptor_docs = st.fixed_dictionaries(
    {},
    optional={
        "mediaType": st.sampled_from(MEDIA_TYPES) | json_values,
        "digest": st.sampled_from(DIGESTS) | json_values,
        "size": sizes,
        "annotations": st.dictionaries(st.text(max_size=5), json_values, max_size=2) | json_values,
        "platform": st.fixed_dictionaries(
            {}, optional={"os": json_values, "architecture": json_values, "variant": json_values}
        )
        | json_values,
        "urls": st.lists(st.text(max_size=10), max_size=2) | json_values,
    },
)
documents = st.fixed_dictionaries(
    {},
    optional={
        "schemaVersion": st.sampled_from([1, 2, "2", None]),
        "mediaType": st.sampled_from(MEDIA_TYPES) | json_values,
        "config": descriptor_docs | json_values,
        "layers": st.lists(descriptor_docs, max_size=4) | json_values,
        "manifests": st.lists(descriptor_docs, max_size=4) | json_values,
        "annotations": st.dictionaries(st.text(max_size=5), json_values, max_size=2) | json_values,
        "rootfs": st.fixed_dictionaries({}, optional={"diff_ids": json_values}) | json_values,
        "os": json_values,
        "architecture": json_values,
    },
)
raw_documents = (
    documents.map(lambda d: json.dumps(d).encode())
    | json_values.map(lambda d: json.dumps(d).encode())
    | st.binary(max_size=60)
    | st.sampled_from(
        [
            b"[" * 100_000,
            b'{"a":' * 100_000,
            b'{"layers": [], "config": {"digest": "sha256:' + b"a" * 64 + b'", "size": 1e999}}',
            b'{"manifests": [{"size": NaN, "digest": "x"}]}',
            b"\xef\xbb\xbf{}",
            b" " * (MAX_MANIFEST_SIZE + 1),
        ]
    )
)


@settings(max_examples=400, deadline=500)
@given(raw_documents, st.sampled_from(MEDIA_TYPES))
def test_documents_parse_or_raise(data: bytes, media_type: str) -> None:
    for parse_doc in (
        lambda: Manifest.parse(data, media_type),
        lambda: Index.parse(data, media_type),
        lambda: ImageConfig.parse(data),
    ):
        try:
            doc = parse_doc()
        except PyctlError as exc:
            _message_ok(exc)
            continue
        for desc in _descriptors(doc):
            # what parses is usable: a real digest (it ends up in URLs and containerd
            # ingest refs) and a size containerd's int64 can hold
            assert desc.digest.startswith(("sha256:", "sha512:")) and "/" not in desc.digest
            assert 0 <= desc.size < 2**63
            assert all(
                isinstance(k, str) and isinstance(v, str) for k, v in desc.annotations.items()
            )


def _descriptors(doc: object) -> list[Descriptor]:
    if isinstance(doc, Manifest):
        return [doc.config, *doc.layers]
    if isinstance(doc, Index):
        return list(doc.manifests)
    return []


class _Documents:
    """A copy-engine source serving fixed documents by digest."""

    def __init__(self, docs: Mapping[str, bytes]) -> None:
        self.docs = dict(docs)

    def read(self, desc: Descriptor) -> bytes:
        try:
            return self.docs[desc.digest]
        except KeyError:
            raise PyctlError(f"{desc.digest}: not found") from None

    def open(self, desc: Descriptor, offset: int) -> Iterator[bytes]:
        yield self.read(desc)[offset:]


def _desc(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data), **extra}


@settings(max_examples=300, deadline=1000)
@given(documents, documents, st.sampled_from(MEDIA_TYPES), st.booleans())
def test_planning_hostile_images_raises_pyctl_error(
    root_doc: dict[str, Any], child_doc: dict[str, Any], root_type: str, all_platforms: bool
) -> None:
    """The planner reads a hostile root and a hostile child (reachable through the root:
    its config or first manifest is rewritten to point at the child's real digest)."""
    child = json.dumps(child_doc).encode()
    if isinstance(root_doc.get("config"), dict):
        root_doc["config"] = _desc(OCI_CONFIG, child)
    if isinstance(root_doc.get("manifests"), list) and root_doc["manifests"]:
        root_doc["manifests"][0] = _desc(
            OCI_MANIFEST, child, platform={"os": "linux", "architecture": "amd64"}
        )
    root = json.dumps(root_doc).encode()
    source = _Documents({sha256_digest(root): root, sha256_digest(child): child})
    desc = Descriptor(root_type, sha256_digest(root), len(root))
    filt = (
        PlatformFilter(all=True) if all_platforms else PlatformFilter((Platform("linux", "amd64"),))
    )
    try:
        result = plan(source, desc, filt)
    except PyctlError as exc:
        _message_ok(exc)
    else:
        assert isinstance(result, Plan)


def _image(layers: int, layer_size: int = 1) -> tuple[_Documents, Descriptor]:
    layer_descs = [
        {"mediaType": OCI_LAYER_GZIP, "digest": f"sha256:{i:064x}", "size": layer_size}
        for i in range(layers)
    ]
    config = json.dumps(
        {
            "os": "linux",
            "architecture": "amd64",
            "rootfs": {
                "type": "layers",
                "diff_ids": ["sha256:%064x" % (i + 1) for i in range(layers)],
            },
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": _desc(OCI_CONFIG, config),
            "layers": layer_descs,
        }
    ).encode()
    docs = {sha256_digest(config): config, sha256_digest(manifest): manifest}
    return _Documents(docs), Descriptor(OCI_MANIFEST, sha256_digest(manifest), len(manifest))


def test_ten_thousand_layers_plan_quickly() -> None:
    from pyctl.containerd.store import gc_labels_for

    source, root = _image(10_000)
    start = time.monotonic()
    result = plan(source, root, PlatformFilter(all=True))
    labels = gc_labels_for(root, result.manifests[0].manifest.children())
    assert time.monotonic() - start < 5
    assert len(result.layers()) == 10_000
    assert len(labels) == 10_001
    assert labels["containerd.io/gc.ref.content.l.9999"] == f"sha256:{9999:064x}"


def test_huge_declared_sizes_are_refused() -> None:
    """A layer claiming more bytes than containerd's int64 can hold is refused while the
    manifest is parsed; an exabyte one parses (the download would fail on the real size)."""
    source, root = _image(1, layer_size=2**63)
    with pytest.raises(PyctlError, match="size"):
        plan(source, root, PlatformFilter(all=True))
    source, root = _image(1, layer_size=2**60)
    assert plan(source, root, PlatformFilter(all=True)).blob_size() > 2**60


# --- the command line -----------------------------------------------------------------------------

cli_words = st.sampled_from(
    [
        "pull",
        "push",
        "images",
        "image",
        "ls",
        "tag",
        "rmi",
        "hosts",
        "inspect",
        "ps",
        "namespace",
        "version",
        "completion",
        "bash",
        "-q",
        "--format",
        "-f",
        "--platform",
        "--all-platforms",
        "-a",
        "--unpack",
        "--max-concurrent-downloads",
        "0",
        "json",
        "table {{.ID}}",
        "{{json .}}",
        "{{.Nope}}",
        "reference=*",
        "dangling=maybe",
        "label=a=b",
        "linux/amd64",
        "a/b/c/d",
        "busybox",
        "UPPER",
        "a@sha256:" + "a" * 64,
        "127.0.0.1:1/x:y",
        "[::1]/x",
        "--",
        "-n",
        "Bad/NS",
        "--insecure-registry",
        "-h",
        "x" * 300,
        "\x00",
        "é",
    ]
)


@settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(cli_words | st.text(max_size=12), max_size=8))
def test_command_lines_end_in_an_exit_status_not_a_crash(
    tmp_path_factory: pytest.TempPathFactory, args: list[str]
) -> None:
    """Random command lines, run in-process against a containerd that is not there: an exit
    status of 0, 1 or 2 and, on failure, one ``pyctl: error:`` line — never an internal
    error or a traceback."""
    import io

    from pyctl.cli.main import run

    home = tmp_path_factory.mktemp("home")
    out, err = io.StringIO(), io.StringIO()
    argv = ["--address", str(home / "no.sock"), "--hosts-dir", str(home), *args]
    env = {"HOME": str(home), "DOCKER_CONFIG": str(home), "XDG_CONFIG_HOME": str(home)}
    with _environment(env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run(argv)
    text = err.getvalue()
    assert code in (0, 1, 2), (code, args, text)
    assert "internal error" not in text and "Traceback" not in text, (args, text)
    if code:
        assert text.splitlines()[-1].startswith("pyctl: error: "), text


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in (*values, "PYCTL_CONFIG", "CONTAINERD_NAMESPACE")}
    os.environ.update(values)
    os.environ.pop("PYCTL_CONFIG", None)
    os.environ.pop("CONTAINERD_NAMESPACE", None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
