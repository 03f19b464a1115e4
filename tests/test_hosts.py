"""Registry endpoint configuration: containerd hosts.toml / certs.d semantics and pyctl rules.

Vectors from containerd's ``core/remotes/docker/config/hosts_test.go`` (TestParseHostFile,
TestDefaultHosts, TestLoadCertFiles, TestHTTPFallback) as summarised in
/work/shared/reference/protocol.md section A.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pyctl.errors import ConfigError
from pyctl.registry.hosts.certsd import find_host_dir, hosts_dirs, load_cert_dir, lookup_host_dir
from pyctl.registry.hosts.containerd_config import load_containerd_config
from pyctl.registry.hosts.cri import cri_registry_config
from pyctl.registry.hosts.golang import is_localhost, parse_go_duration
from pyctl.registry.hosts.hosts_toml import parse_hosts_toml
from pyctl.registry.hosts.model import (
    ALL_CAPABILITIES,
    CAPABILITIES,
    CriHostConfig,
    CriRegistryConfig,
    RegistryHost,
)
from pyctl.registry.hosts.resolve import configure_hosts, resolve_hosts

PULL = frozenset({"pull"})
ALL = frozenset(CAPABILITIES)


def load_cri_config(path: str, *, required: bool = False) -> CriRegistryConfig:
    """The CRI registry settings of containerd's config at ``path`` and its imports."""
    return cri_registry_config(load_containerd_config(path, required=required))


def host_dir(root: Path, name: str, hosts_toml: str | None = None) -> Path:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    if hosts_toml is not None:
        (d / "hosts.toml").write_text(hosts_toml)
    return d


def summary(h: RegistryHost) -> tuple[str, str, str]:
    return (h.scheme, h.host, h.path)


# --------------------------------------------------------------------------------------------
# TestParseHostFile (A11)

PARSE_HOST_FILE = """\
server = "https://test-default.registry"

ca = "/etc/path/default"

[header]
  x-custom-1 = "custom header"

[host."https://mirror.registry"]
  capabilities = ["pull"]
  ca = "/etc/certs/mirror.pem"
  skip_verify = false
  [host."https://mirror.registry".header]
    x-custom-2 = ["value1", "value2"]

[host."https://mirror-bak.registry/us"]
  capabilities = ["pull"]
  skip_verify = true

[host."http://mirror.registry"]
  capabilities = ["pull"]

[host."https://test-1.registry"]
  capabilities = ["pull", "resolve", "push", "referrers"]
  ca = ["/etc/certs/test-1-ca.pem", "/etc/certs/special.pem"]
  client = [["/etc/certs/client.cert", "/etc/certs/client.key"],["/etc/certs/client.pem", ""]]

[host."https://test-2.registry"]
  client = "/etc/certs/client.pem"

[host."https://test-3.registry"]
  client = ["/etc/certs/client-1.pem", "/etc/certs/client-2.pem"]

[host."https://no-referrers.registry"]
  capabilities = ["pull", "resolve", "push"]
  client = ["/etc/certs/client-1.pem", "/etc/certs/client-2.pem"]

[host."https://noncompliantmirror.registry/v2/namespaceprefix"]
  capabilities = ["pull"]
  override_path = true

[host."https://noprefixnoncompliant.registry"]
  override_path = true

[host."https://onlyheader.registry".header]
  x-custom-1 = "justaheader"

[host."https://dial-timeout.registry"]
  dial_timeout = "3s"
"""


def test_parse_host_file_vector() -> None:
    src = "/etc/containerd/certs.d/test-default.registry/hosts.toml"
    hosts = parse_hosts_toml(PARSE_HOST_FILE, base_dir="/etc/x", source=src)
    expected = [
        RegistryHost(
            "https",
            "mirror.registry",
            "/v2",
            PULL,
            ca=("/etc/certs/mirror.pem",),
            skip_verify=False,
            headers={"x-custom-2": ("value1", "value2")},
        ),
        RegistryHost("https", "mirror-bak.registry", "/us/v2", PULL, skip_verify=True),
        RegistryHost("http", "mirror.registry", "/v2", PULL),
        RegistryHost(
            "https",
            "test-1.registry",
            "/v2",
            ALL,
            ca=("/etc/certs/test-1-ca.pem", "/etc/certs/special.pem"),
            client=(
                ("/etc/certs/client.cert", "/etc/certs/client.key"),
                ("/etc/certs/client.pem", ""),
            ),
        ),
        RegistryHost(
            "https", "test-2.registry", "/v2", ALL, client=(("/etc/certs/client.pem", ""),)
        ),
        RegistryHost(
            "https",
            "test-3.registry",
            "/v2",
            ALL,
            client=(("/etc/certs/client-1.pem", ""), ("/etc/certs/client-2.pem", "")),
        ),
        RegistryHost(
            "https",
            "no-referrers.registry",
            "/v2",
            frozenset({"pull", "resolve", "push"}),
            client=(("/etc/certs/client-1.pem", ""), ("/etc/certs/client-2.pem", "")),
        ),
        RegistryHost(
            "https",
            "noncompliantmirror.registry",
            "/v2/namespaceprefix",
            PULL,
            override_path=True,
        ),
        RegistryHost("https", "noprefixnoncompliant.registry", "", ALL, override_path=True),
        RegistryHost(
            "https", "onlyheader.registry", "/v2", ALL, headers={"x-custom-1": ("justaheader",)}
        ),
        RegistryHost("https", "dial-timeout.registry", "/v2", ALL, dial_timeout=3.0),
    ]
    expected = [e._replace(is_mirror=True, source=src) for e in expected]
    expected.append(
        RegistryHost(
            "https",
            "test-default.registry",
            "/v2",
            ALL,
            ca=("/etc/path/default",),
            headers={"x-custom-1": ("custom header",)},
            source=src,
        )
    )
    assert len(hosts) == 12
    for got, want in zip(hosts, expected, strict=True):
        assert got == want
        assert dict(got.headers) == dict(want.headers)


def test_parse_host_file_through_resolve_keeps_order(tmp_path: Path) -> None:
    # the root entry has a server: it is not replaced by the default upstream
    host_dir(tmp_path, "test-default.registry", PARSE_HOST_FILE)
    hosts = resolve_hosts("test-default.registry", hosts_dirs=[str(tmp_path)])
    assert [summary(h) for h in hosts][:3] == [
        ("https", "mirror.registry", "/v2"),
        ("https", "mirror-bak.registry", "/us/v2"),
        ("http", "mirror.registry", "/v2"),  # no TLS settings: stays plain http
    ]
    assert summary(hosts[-1]) == ("https", "test-default.registry", "/v2")
    assert [h.is_mirror for h in hosts] == [True] * 11 + [False]


def test_relative_ca_and_client_paths_are_made_absolute(tmp_path: Path) -> None:
    d = host_dir(
        tmp_path,
        "reg.example",
        'ca = "ca.pem"\n'
        '[host."https://m.example"]\n'
        '  ca = ["sub/a.pem", "/abs/b.pem"]\n'
        '  client = [["c.cert", "c.key"], ["both.pem", ""], "../up.pem"]\n',
    )
    hosts = parse_hosts_toml(
        (d / "hosts.toml").read_text(), base_dir=str(d), source=str(d / "hosts.toml")
    )
    assert hosts[0].ca == (str(d / "sub/a.pem"), "/abs/b.pem")
    # ["both.pem", ""]: "" stays "" = the key is inside the certificate file
    # (containerd would make "" into the hosts directory path and fail to read it)
    assert hosts[0].client == (
        (str(d / "c.cert"), str(d / "c.key")),
        (str(d / "both.pem"), ""),
        (str(tmp_path / "up.pem"), ""),
    )
    assert hosts[1].ca == (str(d / "ca.pem"),)


# --------------------------------------------------------------------------------------------
# TestDefaultHosts / defaults


def test_default_hosts_docker_io() -> None:
    hosts = resolve_hosts("docker.io", hosts_dirs=[])
    assert len(hosts) == 1
    h = hosts[0]
    assert summary(h) == ("https", "registry-1.docker.io", "/v2")
    assert h.capabilities == ALL_CAPABILITIES
    assert (h.http_fallback, h.skip_verify, h.is_mirror, h.source) == (
        False,
        None,
        False,
        "default",
    )


def test_index_docker_io_is_docker_io(tmp_path: Path) -> None:
    assert summary(resolve_hosts("index.docker.io", hosts_dirs=[])[0]) == (
        "https",
        "registry-1.docker.io",
        "/v2",
    )
    host_dir(tmp_path, "docker.io", '[host."https://mirror.gcr.io"]\ncapabilities=["pull"]\n')
    hosts = resolve_hosts("index.docker.io", hosts_dirs=[str(tmp_path)])
    assert [h.host for h in hosts] == ["mirror.gcr.io", "registry-1.docker.io"]


def test_default_other_host() -> None:
    [h] = resolve_hosts("harbor.local", hosts_dirs=[])
    assert summary(h) == ("https", "harbor.local", "/v2")
    assert not h.http_fallback
    [h] = resolve_hosts("harbor.local:8443", hosts_dirs=[])
    assert summary(h) == ("https", "harbor.local:8443", "/v2")


def test_docker_io_server_in_hosts_toml(tmp_path: Path) -> None:
    # docs/hosts.md example
    host_dir(
        tmp_path,
        "docker.io",
        'server = "https://docker.io"\n'
        '[host."https://registry-1.docker.io"]\n  capabilities = ["pull", "resolve"]\n',
    )
    hosts = resolve_hosts("docker.io", hosts_dirs=[str(tmp_path)])
    assert [summary(h) for h in hosts] == [
        ("https", "registry-1.docker.io", "/v2"),
        ("https", "docker.io", "/v2"),
    ]
    assert hosts[0].capabilities == {"pull", "resolve"}


def test_default_dir_mirror_then_upstream(tmp_path: Path) -> None:
    host_dir(tmp_path, "_default", '[host."https://registry.example.com"]\n')
    hosts = resolve_hosts("quay.io", hosts_dirs=[str(tmp_path)])
    assert [summary(h) for h in hosts] == [
        ("https", "registry.example.com", "/v2"),
        ("https", "quay.io", "/v2"),
    ]


def test_server_only_means_only_that_host(tmp_path: Path) -> None:
    host_dir(tmp_path, "_default", 'server = "https://registry.example.com"\n')
    hosts = resolve_hosts("quay.io", hosts_dirs=[str(tmp_path)])
    assert [summary(h) for h in hosts] == [("https", "registry.example.com", "/v2")]


def test_root_settings_apply_to_filled_default(tmp_path: Path) -> None:
    d = host_dir(
        tmp_path,
        "reg.example:5000",
        'ca = "ca.pem"\nskip_verify = false\ndial_timeout = "1m30s"\ncapabilities = ["pull"]\n'
        '[header]\n  Authorization-Extra = "x"\n',
    )
    [h] = resolve_hosts("reg.example:5000", hosts_dirs=[str(tmp_path)])
    assert summary(h) == ("https", "reg.example:5000", "/v2")
    assert h.ca == (str(d / "ca.pem"),)
    assert h.skip_verify is False
    assert h.dial_timeout == 90.0
    assert dict(h.headers) == {"Authorization-Extra": ("x",)}
    assert h.capabilities == ALL_CAPABILITIES  # the filled default gets every capability
    assert h.source == str(d / "hosts.toml")


def test_server_without_scheme_is_https(tmp_path: Path) -> None:
    [h] = parse_hosts_toml('server = "reg.example:5000"\n', base_dir="", source="f")
    assert summary(h) == ("https", "reg.example:5000", "/v2")


def test_override_path_and_path_handling() -> None:
    text = (
        '[host."https://a.example/v2/prefix"]\n  override_path = true\n'
        '[host."https://b.example/us/"]\n'
        '[host."https://c.example/v2"]\n'
        '[host."https://d.example/x/../y/./"]\n'
        '[host."https://e.example/"]\n'
        '[host."https://f.example"]\n  override_path = true\n'
    )
    hosts = parse_hosts_toml(text, base_dir="", source="f")
    assert [h.path for h in hosts[:-1]] == ["/v2/prefix", "/us/v2", "/v2", "/y/v2", "/v2", ""]
    assert hosts[0].override_path


# --------------------------------------------------------------------------------------------
# url() and ns (A7, A8)


def test_url_joining() -> None:
    v2 = RegistryHost("https", "r.example", "/v2", ALL)
    assert v2.url("library/ubuntu", "manifests", "latest") == (
        "https://r.example/v2/library/ubuntu/manifests/latest"
    )
    assert v2.url("library/ubuntu", "blobs/uploads/") == (
        "https://r.example/v2/library/ubuntu/blobs/uploads/"
    )
    assert v2.url() == "https://r.example/v2"
    assert v2.url("") == "https://r.example/v2"
    bare = RegistryHost("https", "r.example", "", ALL, override_path=True)
    assert bare.url("library/ubuntu", "manifests", "latest") == (
        "https://r.example/library/ubuntu/manifests/latest"
    )
    prefixed = RegistryHost("https", "r.example", "/v2/namespaceprefix", PULL)
    assert prefixed.url("library/ubuntu", "manifests", "latest") == (
        "https://r.example/v2/namespaceprefix/library/ubuntu/manifests/latest"
    )
    v6 = RegistryHost("http", "[::1]:5000", "/v2", ALL)
    assert v6.url("a/b", "tags/list") == "http://[::1]:5000/v2/a/b/tags/list"
    assert RegistryHost("https", "h", "//v2/", ALL).url("r", "blobs", "x") == (
        "https://h/v2/r/blobs/x"
    )


def test_needs_ns() -> None:
    hub = RegistryHost("https", "registry-1.docker.io", "/v2", ALL)
    mirror = RegistryHost("https", "mymirror.io", "/v2", PULL, is_mirror=True)
    own = RegistryHost("https", "myregistry.io:5000", "/v2", ALL)
    assert not hub.needs_ns("docker.io")
    assert not hub.needs_ns("index.docker.io")
    assert hub.needs_ns("quay.io")
    assert mirror.needs_ns("myregistry.io:5000")
    assert mirror.needs_ns("docker.io")
    assert not own.needs_ns("myregistry.io:5000")
    assert mirror.url("image_name", "manifests", "tag_name") == (
        "https://mymirror.io/v2/image_name/manifests/tag_name"
    )


def test_has() -> None:
    h = RegistryHost("https", "h", "/v2", frozenset({"pull", "resolve"}))
    assert h.has("pull") and h.has("resolve") and not h.has("push") and not h.has("referrers")


# --------------------------------------------------------------------------------------------
# TestLoadCertFiles (A6)


def test_load_cert_files_ca(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_text("x")
    h = load_cert_dir(str(tmp_path))
    assert h is not None
    assert h.ca == (str(tmp_path / "ca.crt"),)
    assert h.client == ()
    assert h.host == ""


def test_load_cert_files_client_pair(tmp_path: Path) -> None:
    (tmp_path / "client.cert").write_text("x")
    (tmp_path / "client.key").write_text("x")
    h = load_cert_dir(str(tmp_path))
    assert h is not None
    assert h.client == ((str(tmp_path / "client.cert"), str(tmp_path / "client.key")),)
    assert h.ca == ()


def test_load_cert_files_details(tmp_path: Path) -> None:
    (tmp_path / "b.crt").write_text("x")
    (tmp_path / "a.crt").write_text("x")
    (tmp_path / "lone.cert").write_text("x")  # key inside the cert file
    (tmp_path / "orphan.key").write_text("x")  # ignored
    (tmp_path / "dir.crt").mkdir()  # directories skipped
    h = load_cert_dir(str(tmp_path))
    assert h is not None
    assert h.ca == (str(tmp_path / "a.crt"), str(tmp_path / "b.crt"))
    assert h.client == ((str(tmp_path / "lone.cert"), ""),)
    assert h.source == str(tmp_path)


def test_load_cert_dir_nothing(tmp_path: Path) -> None:
    assert load_cert_dir(str(tmp_path)) is None
    assert load_cert_dir(str(tmp_path / "missing")) is None


def test_cert_dir_without_hosts_toml(tmp_path: Path) -> None:
    d = host_dir(tmp_path, "reg.example:5000")
    (d / "ca.crt").write_text("x")
    (d / "client.cert").write_text("x")
    (d / "client.key").write_text("x")
    [h] = resolve_hosts("reg.example:5000", hosts_dirs=[str(tmp_path)])
    assert summary(h) == ("https", "reg.example:5000", "/v2")
    assert h.ca == (str(d / "ca.crt"),)
    assert h.client == ((str(d / "client.cert"), str(d / "client.key")),)
    assert h.source == str(d)


def test_empty_hosts_toml_uses_cert_files(tmp_path: Path) -> None:
    d = host_dir(tmp_path, "reg.example", "")
    (d / "ca.crt").write_text("x")
    [h] = resolve_hosts("reg.example", hosts_dirs=[str(tmp_path)])
    assert h.ca == (str(d / "ca.crt"),)


def test_empty_dir_is_one_default_entry(tmp_path: Path) -> None:
    d = host_dir(tmp_path, "reg.example")
    host_dir(tmp_path, "_default", 'server = "https://elsewhere.example"\n')
    [h] = resolve_hosts("reg.example", hosts_dirs=[str(tmp_path)])
    assert summary(h) == ("https", "reg.example", "/v2")
    assert h.source == str(d)


# --------------------------------------------------------------------------------------------
# TestHTTPFallback (A5)
#
# containerd's HostOptions → pyctl:
#   {}                                   = resolve_hosts(insecure=False)
#   {DefaultScheme: http, DefaultTLS: skip} = resolve_hosts(insecure=True)  (--insecure-registry)
# The other option sets ({https, TLS}, {http} alone) have no pyctl flag; every row is checked
# through configure_hosts(default_scheme=…, default_tls=…), which models HostOptions directly.

HTTP = "http"
TLS = True  # DefaultTLS = &tls.Config{InsecureSkipVerify: true}

FALLBACK_TABLE: list[tuple[str, str, bool | None, str, bool]] = [
    # host, DefaultScheme, DefaultTLS, expected scheme, expected fallback
    ("localhost:8080", HTTP, TLS, "https", True),
    ("localhost:8080", "https", TLS, "https", False),
    ("localhost:8080", "", None, "https", True),
    ("localhost:80", "", None, "http", False),
    ("localhost:443", "", None, "https", False),
    ("localhost:80", HTTP, TLS, "http", False),
    ("localhost", HTTP, TLS, "https", True),
    ("localhost", "https", TLS, "https", False),
    ("localhost", "", None, "https", False),
    ("localhost:5000", "", None, "https", True),
    ("example.com", "", None, "https", False),
    ("example.com", HTTP, TLS, "https", True),
    ("example.com:5000", HTTP, TLS, "https", True),
    ("example.com:5000", "", None, "https", False),
    ("example2.com", HTTP, None, "http", False),
    ("127.0.0.254:5000", "", None, "https", True),
    ("127.0.0.254", "", None, "https", False),
    ("[::1]:5000", "", None, "https", True),
    ("::1", "", None, "https", False),
]


@pytest.mark.parametrize(("host", "scheme", "tls", "want_scheme", "want_fallback"), FALLBACK_TABLE)
def test_http_fallback_table(
    host: str, scheme: str, tls: bool | None, want_scheme: str, want_fallback: bool
) -> None:
    [h] = configure_hosts(host, None, default_scheme=scheme, default_tls=tls)
    assert (h.scheme, h.http_fallback) == (want_scheme, want_fallback)
    assert h.host == host
    assert h.path == "/v2"


@pytest.mark.parametrize(
    ("host", "scheme", "tls", "want_scheme", "want_fallback"),
    [row for row in FALLBACK_TABLE if (row[1], row[2]) in (("", None), (HTTP, TLS))],
)
def test_http_fallback_table_via_resolve_hosts(
    host: str, scheme: str, tls: bool | None, want_scheme: str, want_fallback: bool
) -> None:
    insecure = (scheme, tls) == (HTTP, TLS)
    [h] = resolve_hosts(host, hosts_dirs=[], insecure=insecure)
    assert (h.scheme, h.http_fallback) == (want_scheme, want_fallback)
    if insecure:
        assert h.skip_verify is True


def test_loopback_skip_verify() -> None:
    # containerd: loopback default gets skip_verify unless the port is 80
    assert resolve_hosts("localhost", hosts_dirs=[])[0].skip_verify is True
    assert resolve_hosts("127.0.0.1:5000", hosts_dirs=[])[0].skip_verify is True
    assert resolve_hosts("localhost:80", hosts_dirs=[])[0].skip_verify is None
    assert resolve_hosts("example.com:5000", hosts_dirs=[])[0].skip_verify is None


def test_http_entry_with_tls_becomes_https_with_fallback(tmp_path: Path) -> None:
    host_dir(
        tmp_path,
        "reg.example",
        '[host."http://m1.example:5000"]\n  skip_verify = true\n'
        '[host."http://m2.example:80"]\n  skip_verify = true\n'
        '[host."http://m3.example"]\n  ca = "/x.pem"\n'
        '[host."http://m4.example:5000"]\n',
    )
    hosts = resolve_hosts("reg.example", hosts_dirs=[str(tmp_path)])
    assert [(h.scheme, h.http_fallback) for h in hosts[:4]] == [
        ("https", True),
        ("http", False),
        ("https", True),
        ("http", False),
    ]
    insecure = resolve_hosts("reg.example", hosts_dirs=[str(tmp_path)], insecure=True)
    assert [(h.scheme, h.http_fallback) for h in insecure] == [
        ("https", True),
        ("http", False),
        ("https", True),
        ("https", True),
        ("https", True),  # the filled default with --insecure-registry
    ]
    assert all(h.skip_verify is True for h in insecure)


def test_insecure_docker_io_stays_https() -> None:
    [h] = resolve_hosts("docker.io", hosts_dirs=[], insecure=True)
    assert (h.scheme, h.host, h.http_fallback, h.skip_verify) == (
        "https",
        "registry-1.docker.io",
        False,
        True,
    )


def test_is_localhost() -> None:
    for host in ["localhost", "localhost:5000", "127.0.0.1", "127.1.2.3:80", "::1", "[::1]:5000"]:
        assert is_localhost(host), host
    for host in ["example.com", "10.0.0.1:5000", "localhost.example", "[::2]:5000", "::"]:
        assert not is_localhost(host), host
    assert is_localhost("[::ffff:127.0.0.1]:5000")


# --------------------------------------------------------------------------------------------
# Directory lookup (A1) and hosts_dirs


def test_lookup_order_host_port_dir_first(tmp_path: Path) -> None:
    a = host_dir(tmp_path, "myregistry.io_5000_")
    host_dir(tmp_path, "myregistry.io:5000")
    host_dir(tmp_path, "_default")
    assert find_host_dir(str(tmp_path), "myregistry.io:5000") == str(a)


def test_lookup_order_host_dir_before_default(tmp_path: Path) -> None:
    b = host_dir(tmp_path, "myregistry.io:5000")
    d = host_dir(tmp_path, "_default")
    assert find_host_dir(str(tmp_path), "myregistry.io:5000") == str(b)
    assert find_host_dir(str(tmp_path), "other.io") == str(d)


def test_lookup_no_portless_fallback_in_containerd(tmp_path: Path) -> None:
    host_dir(tmp_path, "myregistry.io")
    assert find_host_dir(str(tmp_path), "myregistry.io:5000") is None
    assert find_host_dir(str(tmp_path / "missing"), "myregistry.io") is None


def test_lookup_ipv6(tmp_path: Path) -> None:
    d = host_dir(tmp_path, "[::1]_5000_")
    assert find_host_dir(str(tmp_path), "[::1]:5000") == str(d)


def test_lookup_file_counts_as_found(tmp_path: Path) -> None:
    (tmp_path / "reg.example").write_text("")
    assert find_host_dir(str(tmp_path), "reg.example") == str(tmp_path / "reg.example")
    with pytest.raises(ConfigError):
        resolve_hosts("reg.example", hosts_dirs=[str(tmp_path)])


def test_lookup_stat_error_is_config_error(tmp_path: Path) -> None:
    root = tmp_path / "afile"
    root.write_text("")
    with pytest.raises(ConfigError, match="afile"):
        find_host_dir(str(root), "reg.example")  # ENOTDIR, not ENOENT


def test_lookup_rejects_path_like_hosts(tmp_path: Path) -> None:
    for bad in ["../etc", "..", "a/b", ""]:
        with pytest.raises(ConfigError):
            find_host_dir(str(tmp_path), bad)


def test_first_hosts_dir_that_matches_wins(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    host_dir(second, "reg.example", 'server = "https://second.example"\n')
    hosts = resolve_hosts("reg.example", hosts_dirs=[str(first), str(second)])
    assert [h.host for h in hosts] == ["second.example"]
    host_dir(first, "_default", 'server = "https://first.example"\n')
    hosts = resolve_hosts("reg.example", hosts_dirs=[str(first), str(second)])
    assert [h.host for h in hosts] == ["first.example"]


def test_port_443_falls_back_to_bare_host(tmp_path: Path) -> None:
    host_dir(tmp_path, "reg.example", 'server = "https://bare.example"\n')
    assert lookup_host_dir("reg.example:443", [str(tmp_path)]) == str(tmp_path / "reg.example")
    hosts = resolve_hosts("reg.example:443", hosts_dirs=[str(tmp_path)])
    assert [h.host for h in hosts] == ["bare.example"]
    # the exact host:443 directory is preferred
    host_dir(tmp_path, "reg.example:443", 'server = "https://port.example"\n')
    assert [h.host for h in resolve_hosts("reg.example:443", hosts_dirs=[str(tmp_path)])] == [
        "port.example"
    ]
    # no bare fallback for other ports
    assert lookup_host_dir("reg.example:5000", [str(tmp_path)]) is None


def test_hosts_dirs_order() -> None:
    none = CriRegistryConfig()
    assert hosts_dirs([], none) == ["/etc/containerd/certs.d", "/etc/docker/certs.d"]
    cri = CriRegistryConfig(path="/c.toml", config_path="/etc/k8s/certs.d")
    assert hosts_dirs([], cri) == [
        "/etc/k8s/certs.d",
        "/etc/containerd/certs.d",
        "/etc/docker/certs.d",
    ]
    assert hosts_dirs(["/a", "/b"], cri) == ["/a", "/b"]
    multi = CriRegistryConfig(config_path="/x:/etc/containerd/certs.d")
    assert hosts_dirs([], multi) == ["/x", "/etc/containerd/certs.d", "/etc/docker/certs.d"]


# --------------------------------------------------------------------------------------------
# hosts.toml details


def test_header_tables_define_hosts_in_header_order() -> None:
    text = (
        '[host."https://b.example".header]\n  x = "1"\n'
        '[host."https://a.example"]\n  capabilities = ["pull"]\n'
        '[host."https://a.example".header]\n  y = ["2", "3"]\n'
        '[host."https://c.example"]\n'
    )
    hosts = parse_hosts_toml(text, base_dir="", source="f")
    assert [h.host for h in hosts] == ["b.example", "a.example", "c.example", ""]
    assert dict(hosts[0].headers) == {"x": ("1",)}
    assert hosts[0].capabilities == ALL_CAPABILITIES
    assert dict(hosts[1].headers) == {"y": ("2", "3")}
    assert hosts[1].capabilities == PULL


def test_host_revisited_after_another_is_listed_once() -> None:
    text = (
        '[host."https://a.example"]\n'
        '[host."https://b.example"]\n'
        '[host."https://a.example".header]\n  x = "1"\n'
    )
    hosts = parse_hosts_toml(text, base_dir="", source="f")
    assert [h.host for h in hosts] == ["a.example", "b.example", ""]
    assert dict(hosts[0].headers) == {"x": ("1",)}


def test_hosts_come_in_the_order_the_file_first_names_them() -> None:
    """tomllib's order. Hosts written as dotted keys or inline tables (no hosts.toml in the
    wild does) count where they stand: containerd 1.6 counts them too (inline ones first,
    their go-toml v1 position is line 0), containerd 2.x skips all but ``[host."X"…]``
    headers."""
    dotted = (
        'host."https://dotted.example".capabilities = ["pull"]\n[host."https://real.example"]\n'
    )
    hosts = parse_hosts_toml(dotted, base_dir="", source="f")
    assert [h.host for h in hosts] == ["dotted.example", "real.example", ""]
    assert hosts[0].capabilities == PULL
    inline = (
        "[host]\n"
        '  "https://inline.example" = { capabilities = ["pull"] }\n'
        '[host."https://real.example"]\n'
    )
    hosts = parse_hosts_toml(inline, base_dir="", source="f")
    assert [h.host for h in hosts] == ["inline.example", "real.example", ""]


def test_values_that_look_like_headers_are_values() -> None:
    text = (
        'server = "https://s.example"  # [host."https://comment.example"]\n'
        "ca = [\n"
        '  "/a.pem", # [host."https://in-array.example"]\n'
        "  '/b.pem',\n"
        "]\n"
        'note = """\n[host."https://in-string.example"]\n"""\n'
        "lit = '''\n[host.\"https://in-literal.example\"]\n'''\n"
        "[ host . 'https://spaced.example' ]\n"
        '[host."https://esc\\u0061ped.example"]\n'
    )
    hosts = parse_hosts_toml(text, base_dir="", source="f")
    assert [h.host for h in hosts] == ["spaced.example", "escaped.example", "s.example"]
    assert hosts[-1].ca == ("/a.pem", "/b.pem")


def test_root_header_does_not_leak_to_mirrors(tmp_path: Path) -> None:
    host_dir(
        tmp_path,
        "reg.example",
        '[header]\n  User-Agent = "server"\n'
        '[host."https://mirror.example"]\n'
        '[host."https://mirror.example".header]\n  User-Agent = "mirror"\n'
        '[host."https://plain.example"]\n',
    )
    hosts = resolve_hosts("reg.example", hosts_dirs=[str(tmp_path)])
    assert [dict(h.headers) for h in hosts] == [
        {"User-Agent": ("mirror",)},
        {},
        {"User-Agent": ("server",)},
    ]


def test_capabilities_case_insensitive() -> None:
    [m, _] = parse_hosts_toml(
        '[host."https://m.example"]\ncapabilities = ["PULL", "Resolve"]\n', base_dir="", source="f"
    )
    assert m.capabilities == {"pull", "resolve"}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('[host."https://m.example"]\ncapabilities = ["pull", "fly"]\n', "unknown capability"),
        ('[host."https://m.example"]\ncapabilities = "pull"\n', "capabilities"),
        ("ca = 5\n", "'ca'"),
        ('ca = ["/a", 1]\n', "'ca'"),
        ('[host."https://m.example"]\nca = {a = 1}\n', "'ca'"),
        ('client = [["/a", "/b", "/c"]]\n', "client"),
        ("client = 3\n", "client"),
        ('skip_verify = "yes"\n', "skip_verify"),
        ("override_path = 1\n", "override_path"),
        ('dial_timeout = "3 seconds"\n', "dial_timeout"),
        ("dial_timeout = 3\n", "dial_timeout"),
        ('dial_timeout = "-1s"\n', "dial_timeout"),
        ("[header]\nx = 1\n", "header"),
        ('server = "ftp://x.example"\n', "http or https"),
        ('server = "https://x.example:port"\n', "invalid URL"),
        ('server = "https://"\n', "host"),
        ("server = 5\n", "server"),
        ('host = "x"\n', "host"),
        ('[[host."https://m.example"]]\n', "m.example"),
        ("this is not toml\n", "invalid TOML"),
        ('ca = ""\n', "empty path"),
    ],
)
def test_malformed_hosts_toml_is_config_error_naming_file(text: str, match: str) -> None:
    src = "/etc/containerd/certs.d/reg.example/hosts.toml"
    with pytest.raises(ConfigError, match=match) as info:
        parse_hosts_toml(text, base_dir="/d", source=src)
    assert src in str(info.value)


def test_malformed_hosts_toml_via_resolve(tmp_path: Path) -> None:
    d = host_dir(tmp_path, "reg.example", '[host."https://m"]\ncapabilities = ["bogus"]\n')
    (d / "ca.crt").write_text("x")  # containerd would silently fall back to these; pyctl fails
    with pytest.raises(ConfigError, match="bogus") as info:
        resolve_hosts("reg.example", hosts_dirs=[str(tmp_path)])
    assert str(d / "hosts.toml") in str(info.value)


def test_unknown_keys_are_ignored_like_containerd() -> None:
    [h] = parse_hosts_toml('server = "https://s"\nfuture_option = true\n', base_dir="", source="f")
    assert h.host == "s"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("3s", 3.0),
        ("500ms", 0.5),
        ("1m30s", 90.0),
        ("1.5h", 5400.0),
        ("250us", 0.00025),
        ("250\u00b5s", 0.00025),
        ("10ns", 1e-8),
        ("0", 0.0),
        (".5s", 0.5),
        ("+2s", 2.0),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "3", "s", "3x", "1 s", ".s", "3S", "1h-1m"])
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_go_duration(text)


def test_dial_timeout_parsed_in_hosts_toml() -> None:
    hosts = parse_hosts_toml(
        '[host."https://a"]\ndial_timeout = "500ms"\n[host."https://b"]\ndial_timeout = "1m30s"\n',
        base_dir="",
        source="f",
    )
    assert [h.dial_timeout for h in hosts] == [0.5, 90.0, None]


# --------------------------------------------------------------------------------------------
# containerd's config.toml (CRI)


def write_cri(tmp_path: Path, text: str) -> str:
    p = tmp_path / "config.toml"
    p.write_text(text)
    return str(p)


def test_cri_config_missing_file(tmp_path: Path) -> None:
    cri = load_cri_config(str(tmp_path / "nope.toml"))
    assert cri == CriRegistryConfig()
    assert cri.path == ""


def test_cri_config_v2_config_path(tmp_path: Path) -> None:
    path = write_cri(
        tmp_path,
        'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n'
        '  config_path = "/etc/containerd/certs.d"\n',
    )
    cri = load_cri_config(path)
    assert (cri.path, cri.config_path) == (path, "/etc/containerd/certs.d")


def test_cri_config_v3_config_path(tmp_path: Path) -> None:
    path = write_cri(
        tmp_path,
        'version = 3\n[plugins."io.containerd.cri.v1.images".registry]\n'
        '  config_path = "/etc/k3s/certs.d"\n',
    )
    assert load_cri_config(path).config_path == "/etc/k3s/certs.d"


def test_cri_config_v1_layout(tmp_path: Path) -> None:
    path = write_cri(
        tmp_path, '[plugins.cri.registry.mirrors."docker.io"]\nendpoint = ["https://m"]\n'
    )
    assert load_cri_config(path).mirrors == {"docker.io": ("https://m",)}


def test_cri_config_without_registry(tmp_path: Path) -> None:
    path = write_cri(tmp_path, 'version = 2\n[plugins."io.containerd.grpc.v1.cri"]\nx = 1\n')
    cri = load_cri_config(path)
    assert (cri.path, cri.config_path, dict(cri.mirrors), dict(cri.configs)) == (path, "", {}, {})


LEGACY = """\
version = 2
[plugins."io.containerd.grpc.v1.cri".registry]
  [plugins."io.containerd.grpc.v1.cri".registry.headers]
    X-Meta = ["a"]
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors]
    [plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]
      endpoint = ["https://mirror.gcr.io", "http://localhost:5001", "plain.example:8080/sub"]
    [plugins."io.containerd.grpc.v1.cri".registry.mirrors."*"]
      endpoint = ["https://catchall.example"]
    [plugins."io.containerd.grpc.v1.cri".registry.mirrors."self.example"]
      endpoint = ["https://self.example"]
  [plugins."io.containerd.grpc.v1.cri".registry.configs]
    [plugins."io.containerd.grpc.v1.cri".registry.configs."mirror.gcr.io".tls]
      ca_file = "/etc/ca.pem"
      cert_file = "/etc/c.pem"
      key_file = "/etc/c.key"
    [plugins."io.containerd.grpc.v1.cri".registry.configs."mirror.gcr.io".auth]
      username = "u"
      password = "p"
    [plugins."io.containerd.grpc.v1.cri".registry.configs."registry-1.docker.io".tls]
      insecure_skip_verify = true
    [plugins."io.containerd.grpc.v1.cri".registry.configs."internal.example:5000".tls]
      insecure_skip_verify = true
    [plugins."io.containerd.grpc.v1.cri".registry.configs."internal.example:5000".auth]
      auth = "dTpw"
      identitytoken = "tok"
"""


def test_cri_config_legacy_sections_parsed(tmp_path: Path) -> None:
    path = write_cri(tmp_path, LEGACY)
    cri = load_cri_config(path)
    assert cri.mirrors["docker.io"] == (
        "https://mirror.gcr.io",
        "http://localhost:5001",
        "plain.example:8080/sub",
    )
    assert cri.configs["mirror.gcr.io"] == CriHostConfig(
        ca_file="/etc/ca.pem",
        cert_file="/etc/c.pem",
        key_file="/etc/c.key",
        username="u",
        password="p",
        has_tls=True,
        has_auth=True,
        tls_from=(path,),
        auth_from=(path,),
    )
    internal = cri.configs["internal.example:5000"]
    assert (internal.insecure_skip_verify, internal.auth, internal.identity_token) == (
        True,
        "dTpw",
        "tok",
    )
    assert dict(cri.headers) == {"X-Meta": ("a",)}


def test_legacy_mirrors_then_upstream(tmp_path: Path) -> None:
    cri = load_cri_config(write_cri(tmp_path, LEGACY))
    hosts = resolve_hosts("docker.io", hosts_dirs=[str(tmp_path / "none")], cri=cri)
    assert [(h.scheme, h.host, h.path, h.http_fallback) for h in hosts] == [
        ("https", "mirror.gcr.io", "/v2", False),
        ("http", "localhost:5001", "/v2", False),
        ("https", "plain.example:8080", "/sub", False),
        ("https", "registry-1.docker.io", "/v2", False),
    ]
    assert [h.is_mirror for h in hosts] == [True, True, True, False]
    assert hosts[0].ca == ("/etc/ca.pem",)
    assert hosts[0].client == (("/etc/c.pem", "/etc/c.key"),)
    assert hosts[0].skip_verify is False
    assert hosts[0].capabilities == {"pull", "resolve", "referrers"}
    assert hosts[3].skip_verify is True  # configs."registry-1.docker.io".tls
    assert hosts[3].capabilities == ALL_CAPABILITIES
    assert [h.source for h in hosts] == [cri.path] * 4


def test_legacy_endpoint_path_is_the_api_root_as_written(tmp_path: Path) -> None:
    """containerd adds /v2 to an endpoint with no path only: "https://m.example/" keeps "/" (and
    never answers, as the kubelet finds out; pyctl must not work where the node does not)."""
    text = (
        'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]\n'
        '  endpoint = ["https://slash.example/", "https://bare.example", "https://p.example/v2/x"]\n'
    )
    cri = load_cri_config(write_cri(tmp_path, text))
    hosts = resolve_hosts("docker.io", hosts_dirs=[], cri=cri)
    assert [(h.host, h.path) for h in hosts] == [
        ("slash.example", "/"),
        ("bare.example", "/v2"),
        ("p.example", "/v2/x"),
        ("registry-1.docker.io", "/v2"),
    ]


def test_legacy_wildcard_and_upstream_in_list(tmp_path: Path) -> None:
    cri = load_cri_config(write_cri(tmp_path, LEGACY))
    hosts = resolve_hosts("quay.io", hosts_dirs=[], cri=cri)
    assert [h.host for h in hosts] == ["catchall.example", "quay.io"]
    assert hosts[-1].source == "default"
    # the upstream is one of the endpoints: nothing appended
    hosts = resolve_hosts("self.example", hosts_dirs=[], cri=cri)
    assert [(h.host, h.is_mirror) for h in hosts] == [("self.example", False)]
    assert hosts[0].capabilities == ALL_CAPABILITIES


def test_legacy_configs_only(tmp_path: Path) -> None:
    text = (
        'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry.configs."internal.example:5000"'
        ".tls]\n  insecure_skip_verify = true\n"
    )
    cri = load_cri_config(write_cri(tmp_path, text))
    [h] = resolve_hosts("internal.example:5000", hosts_dirs=[], cri=cri)
    assert (h.scheme, h.host, h.skip_verify, h.source) == (
        "https",
        "internal.example:5000",
        True,
        cri.path,
    )
    [other] = resolve_hosts("other.example", hosts_dirs=[], cri=cri)
    assert (other.skip_verify, other.source) == (None, "default")


def test_legacy_ignored_when_config_path_set(tmp_path: Path) -> None:
    text = LEGACY.replace(
        '[plugins."io.containerd.grpc.v1.cri".registry]\n',
        '[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/nonexistent"\n',
    )
    cri = load_cri_config(write_cri(tmp_path, text))
    assert cri.config_path == "/nonexistent"
    hosts = resolve_hosts("docker.io", hosts_dirs=hosts_dirs([], cri)[:1], cri=cri)
    assert [h.host for h in hosts] == ["registry-1.docker.io"]


def test_legacy_ignored_when_hosts_dir_matches(tmp_path: Path) -> None:
    cri = load_cri_config(write_cri(tmp_path, LEGACY))
    certs = tmp_path / "certs.d"
    host_dir(certs, "docker.io", '[host."https://own-mirror.example"]\n')
    hosts = resolve_hosts("docker.io", hosts_dirs=[str(certs)], cri=cri)
    assert [h.host for h in hosts] == ["own-mirror.example", "registry-1.docker.io"]
    assert hosts[-1].skip_verify is None


def test_legacy_insecure(tmp_path: Path) -> None:
    cri = load_cri_config(write_cri(tmp_path, LEGACY))
    hosts = resolve_hosts("docker.io", hosts_dirs=[], cri=cri, insecure=True)
    assert [(h.scheme, h.http_fallback, h.skip_verify) for h in hosts] == [
        ("https", False, True),
        ("https", True, True),
        ("https", False, True),
        ("https", False, True),
    ]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("version = 2\n[plugins\n", "invalid TOML"),
        ('version = 2\n[plugins."io.containerd.grpc.v1.cri"]\nregistry = 1\n', "registry"),
        (
            'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\nconfig_path = 1\n',
            "config_path",
        ),
        (
            'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry.mirrors."x"]\n'
            'endpoint = "https://m"\n',
            "endpoint",
        ),
        (
            'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry.configs."x".tls]\n'
            'cert_file = "/c"\n',
            "key_file",
        ),
        (
            'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry.configs."x".tls]\n'
            'insecure_skip_verify = "yes"\n',
            "insecure_skip_verify",
        ),
    ],
)
def test_cri_config_errors_name_the_file(tmp_path: Path, text: str, match: str) -> None:
    path = write_cri(tmp_path, text)
    with pytest.raises(ConfigError, match=match) as info:
        load_cri_config(path)
    assert path in str(info.value)


def test_cri_config_missing_is_empty_unless_required(tmp_path: Path) -> None:
    path = str(tmp_path / "config.toml")
    assert load_cri_config(path) == CriRegistryConfig()
    with pytest.raises(ConfigError, match="no such file") as info:
        load_cri_config(path, required=True)
    assert path in str(info.value)


def test_cri_config_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.mkdir()  # reading a directory fails even as root
    with pytest.raises(ConfigError, match="cannot read it: Is a directory") as info:
        load_cri_config(str(path))
    assert str(path) in str(info.value)


def test_registry_config_reads_a_named_containerd_config_or_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pyctl.config import Settings
    from pyctl.registry.connect import RegistryConfig

    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    missing = str(tmp_path / "nope.toml")
    for source in ("flag", "config"):
        named = Settings(containerd_config=missing, sources={"containerd_config": source})
        with pytest.raises(ConfigError, match="no such file"):
            RegistryConfig.load(named)
    default = Settings(containerd_config=missing, sources={"containerd_config": "default"})
    assert RegistryConfig.load(default).cri == CriRegistryConfig()
    none = Settings(containerd_config="", sources={"containerd_config": "config"})
    assert RegistryConfig.load(none).cri == CriRegistryConfig()
