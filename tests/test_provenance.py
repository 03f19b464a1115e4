"""Which configuration applied, for error messages: near misses and fixes."""

from __future__ import annotations

from pathlib import Path

from pyctl.registry.hosts.provenance import HostsLookup, applied_config, tls_fix
from pyctl.registry.hosts.resolve import resolve_hosts


def test_near_misses_are_the_same_host_with_another_port(tmp_path: Path) -> None:
    for name in (
        "harbor.local",
        "harbor.local_443_",
        "harbor.local:5000",
        "other.local",
    ):
        (tmp_path / name).mkdir()
    lookup = HostsLookup.of("harbor.local:8443", [str(tmp_path)])
    assert lookup.applied is None
    assert lookup.near_misses == (
        (str(tmp_path / "harbor.local"), "harbor.local"),
        (str(tmp_path / "harbor.local:5000"), "harbor.local:5000"),
        (str(tmp_path / "harbor.local_443_"), "harbor.local:443"),
    )


def test_a_port_443_directory_does_not_serve_the_bare_host(tmp_path: Path) -> None:
    (tmp_path / "harbor.local:443").mkdir()
    lookup = HostsLookup.of("harbor.local", [str(tmp_path)])
    assert lookup.applied is None
    assert lookup.near_misses == ((str(tmp_path / "harbor.local:443"), "harbor.local:443"),)
    (entry,) = resolve_hosts("harbor.local", hosts_dirs=[str(tmp_path)])
    text = tls_fix(entry, lookup)
    assert text.startswith(f"no hosts.toml applies to harbor.local (looked in {tmp_path}); ")
    assert f"{tmp_path / 'harbor.local:443'} is for harbor.local:443, not harbor.local" in text
    assert f"add the registry's CA in {tmp_path / 'harbor.local'}/hosts.toml" in text


def test_applied_hosts_toml_without_ca_names_the_file_and_the_crt_beside_it(
    tmp_path: Path,
) -> None:
    d = tmp_path / "harbor.local:8443"
    d.mkdir()
    (d / "hosts.toml").write_text('server = "https://harbor.local:8443"\n')
    (d / "ca.crt").write_text("not read")
    lookup = HostsLookup.of("harbor.local:8443", [str(tmp_path)])
    assert lookup.applied == str(d) and lookup.near_misses == ()
    (entry,) = resolve_hosts("harbor.local:8443", hosts_dirs=[str(tmp_path)])
    assert applied_config(entry, lookup) == f"hosts.toml {d / 'hosts.toml'}"
    assert tls_fix(entry, lookup) == (
        f"{d / 'hosts.toml'} applied and sets no ca for https://harbor.local:8443: add "
        f'ca = "{d / "ca.crt"}" to its top level (ca.crt beside a hosts.toml is not read), '
        "or use --insecure-registry"
    )


def test_certs_d_directory_without_hosts_toml(tmp_path: Path) -> None:
    d = tmp_path / "harbor.local"
    d.mkdir()
    (d / "ca.crt").write_text("x")
    (entry,) = resolve_hosts("harbor.local", hosts_dirs=[str(tmp_path)])
    lookup = HostsLookup.of("harbor.local", [str(tmp_path)])
    assert applied_config(entry, lookup) == f"certs.d directory {d}"
    assert f"its {d / 'ca.crt'} does not verify" in tls_fix(entry, lookup)
