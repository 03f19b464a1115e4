"""The offline lint of ``pyctl hosts --check``: one test per case SPEC "Registry doctor" lists,
each asserting the exact finding (severity, file, line, message, fix)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from cryptography.x509.oid import NameOID

from pyctl.config import Settings
from pyctl.errors import InvalidReferenceError
from pyctl.registry.lint import Finding, Severity, lint, registry_of
from pyctl.registry.lint.tomllines import TomlLines

OK, WARN, FAIL = Severity.OK, Severity.WARN, Severity.FAIL
CRI2 = 'plugins."io.containerd.grpc.v1.cri"'
CRI3 = 'plugins."io.containerd.cri.v1.images"'
REJECTS = (
    'containerd rejects the whole file (it logs "failed to decode hosts.toml") and uses only '
    "the *.crt / *.cert files of {dir}: every mirror, server and ca in it is ignored"
)
NOT_PEM_FIX = (
    "replace it with the registry CA's certificate in PEM form (-----BEGIN CERTIFICATE-----)"
)
IGNORED = 'containerd 1.6/1.7 ignore it without a word, 2.x logs "Ignoring unknown key in TOML'


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def run(
    tmp_path: Path,
    target: str,
    files: dict[str, str] | None = None,
    *,
    certs: str | None = "certs.d",
    config: str = "config.toml",
) -> list[Finding]:
    """lint() with containerd's config at tmp_path/config and --hosts-dir tmp_path/certs."""
    write(tmp_path, files or {})
    (tmp_path / "certs.d").mkdir(exist_ok=True)
    settings = Settings(
        containerd_config=str(tmp_path / config) if (tmp_path / config).exists() else "",
        hosts_dir=(str(tmp_path / certs),) if certs else (),
        sources={"containerd_config": "flag"},
    )
    return lint(settings, target)


def problems(findings: list[Finding]) -> list[tuple[Severity, str, int | None, str, str]]:
    return [(f.severity, f.file, f.line, f.message, f.fix) for f in findings if f.severity != OK]


def only(findings: list[Finding]) -> tuple[Severity, str, int | None, str, str]:
    (found,) = problems(findings)
    return found


# --- containerd's config -----------------------------------------------------------------------


def test_plugin_typo_table_is_ignored(tmp_path: Path) -> None:
    conf = (
        "version = 2\n\n"
        '[plugin."io.containerd.grpc.v1.cri".registry.mirrors."harbor.local"]\n'
        '  endpoint = ["https://mirror.example"]\n'
    )
    assert only(run(tmp_path, "harbor.local/x:1", {"config.toml": conf})) == (
        FAIL,
        str(tmp_path / "config.toml"),
        3,
        '[plugin."io.containerd.grpc.v1.cri".registry.mirrors."harbor.local"]: containerd has no '
        "top-level 'plugin' table (plugin settings live under \"plugins\"): "
        + IGNORED
        + '" and ignores it; none of its registry settings apply',
        "write [plugins.…] for [plugin.…] in every table header (the registry of this config "
        f"is [{CRI2}.registry])",
    )


def test_a_whole_path_quoted_as_the_plugin_name(tmp_path: Path) -> None:
    conf = 'version = 2\n[plugins."io.containerd.grpc.v1.cri.registry".mirrors."docker.io"]\n'
    assert only(run(tmp_path, "busybox", {"config.toml": conf})) == (
        FAIL,
        str(tmp_path / "config.toml"),
        2,
        '[plugins."io.containerd.grpc.v1.cri.registry"]: no containerd plugin has that name (the '
        "quotes close after the plugin's name), so containerd ignores the table",
        f"write it as [{CRI2}.registry…]",
    )


def test_grpc_cri_registry_in_a_version_3_config(tmp_path: Path) -> None:
    conf = f'version = 3\n[{CRI2}.registry]\n  config_path = "/etc/containerd/certs.d"\n'
    assert only(run(tmp_path, "harbor.local", {"config.toml": conf})) == (
        FAIL,
        str(tmp_path / "config.toml"),
        2,
        f"[{CRI2}.registry] in a version 3 config: containerd 2.0, 2.1 and 2.2 ignore it (they "
        'log "Ignoring unknown key in TOML for plugin" io.containerd.grpc.v1.cri: registry); '
        "only 2.3 and later move it to io.containerd.cri.v1.images when they migrate a "
        "version 3 config",
        f"write it as [{CRI3}.registry]",
    )


@pytest.mark.parametrize(
    ("version", "table", "why", "fix"),
    [
        (
            4,
            CRI2,
            'containerd 2.3 and later ignore it in a version 4 config (they log "Ignoring '
            'unknown key in TOML for plugin" io.containerd.grpc.v1.cri: registry)',
            CRI3,
        ),
        (
            2,
            "plugins.cri",
            "containerd 2.x renames plugins.cri only in a version 1 config and ignores it in a "
            "version 2 one; containerd 1.6/1.7 do not start with it (a version 2 config names "
            'plugins in full: "invalid plugin key URI \\"cri\\" expect io.containerd.x.vx")',
            CRI2,
        ),
        (
            1,
            CRI2,
            "containerd 1.6/1.7 look plugins up by their short name (plugins.cri) in a version 1 "
            "config and ignore it without a word; containerd 2.x reads it",
            "plugins.cri",
        ),
    ],
)
def test_registry_under_the_wrong_key_for_the_version(
    tmp_path: Path, version: int, table: str, why: str, fix: str
) -> None:
    conf = f'version = {version}\n\n[{table}.registry]\n  config_path = "/x"\n'
    found = run(tmp_path, "harbor.local", {"config.toml": conf})
    assert problems(found)[0] == (
        FAIL,
        str(tmp_path / "config.toml"),
        3,
        f"[{table}.registry] in a version {version} config: {why}",
        f"write it as [{fix}.registry]"
        + (f", or start {tmp_path}/config.toml with version = 2" if version == 1 else ""),
    )


@pytest.mark.parametrize(
    ("version", "table"), [(1, "plugins.cri"), (2, CRI2), (3, CRI3), (0, "plugins.cri")]
)
def test_registry_under_the_right_key(tmp_path: Path, version: int, table: str) -> None:
    head = f"version = {version}\n" if version else ""
    conf = f'{head}[{table}.registry.headers]\n  X-A = ["1"]\n'
    assert problems(run(tmp_path, "harbor.local", {"config.toml": conf})) == []


def test_plugins_cri_of_a_version_1_config_is_read_by_every_containerd(tmp_path: Path) -> None:
    """1.6/1.7 read plugins.cri of a version 1 config; 2.x renames it when it migrates."""
    conf = '[plugins.cri.registry.headers]\n  X-A = ["1"]\n'
    assert problems(run(tmp_path, "harbor.local", {"config.toml": conf})) == []


def test_both_registry_tables_in_one_file(tmp_path: Path) -> None:
    conf = (
        f"version = 3\n[{CRI3}.registry.headers]\n  X-A = ['1']\n"
        f"[{CRI2}.registry.headers]\n  X-B = ['2']\n"
    )
    found = problems(run(tmp_path, "harbor.local", {"config.toml": conf}))
    assert found[0] == (
        WARN,
        str(tmp_path / "config.toml"),
        2,
        f"this file has both [{CRI2}.registry] and [{CRI3}.registry]: containerd 2.x moves the "
        "first over the second when it migrates a version 3 config, replacing it whole",
        f"keep one: move the settings into [{CRI3}.registry]",
    )


def test_unknown_cri_registry_key_with_the_likely_one(tmp_path: Path) -> None:
    conf = (
        f'version = 2\n[{CRI2}.registry.mirrors."docker.io"]\n'
        '  endpoints = ["https://mirror.gcr.io"]\n'
        f'[{CRI2}.registry.mirrors."quay.io"]\n  endpoints = ["https://other"]\n'
    )
    assert only(run(tmp_path, "busybox", {"config.toml": conf})) == (
        FAIL,
        str(tmp_path / "config.toml"),
        3,
        f'{CRI2}.registry.mirrors."docker.io".endpoints: containerd does not know '
        f"'endpoints' here (it knows endpoint): {IGNORED} for plugin\" and ignores it",
        "rename it to 'endpoint'",
    )


def test_unknown_keys_at_each_level(tmp_path: Path) -> None:
    conf = (
        f"version = 2\n[{CRI2}.registry]\n  config_pth = '/x'\n"
        f'[{CRI2}.registry.configs."harbor.local".auth]\n  user = "u"\n'
        f'[{CRI2}.registry.configs."harbor.local".tls]\n  insecure_skip_verify = true\n'
    )
    found = problems(run(tmp_path, "harbor.local", {"config.toml": conf}))
    assert [(f[2], f[3].split(":")[0], f[4]) for f in found] == [
        (3, f"{CRI2}.registry.config_pth", "rename it to 'config_path'"),
        (5, f'{CRI2}.registry.configs."harbor.local".auth.user', "rename it to 'username'"),
    ]


def test_configs_tls_for_containerd_2(tmp_path: Path) -> None:
    conf = f'version = 3\n[{CRI3}.registry.configs."harbor.local".tls]\n  ca_file = "/ca.pem"\n'
    assert only(run(tmp_path, "harbor.local/x", {"config.toml": conf})) == (
        FAIL,
        str(tmp_path / "config.toml"),
        2,
        f'{CRI3}.registry.configs."harbor.local".tls: containerd 2.x has no '
        'registry.configs."HOST".tls (removed in 2.0): it logs "Ignoring unknown key in TOML '
        'for plugin" and harbor.local gets no CA, client certificate or skip_verify from it',
        f"put them in {tmp_path}/certs.d/harbor.local/hosts.toml (ca = …, client = …)",
    )


def test_config_path_beside_mirrors(tmp_path: Path) -> None:
    conf = (
        f"version = 2\n[{CRI2}.registry]\n  config_path = '/etc/containerd/certs.d'\n\n"
        f'[{CRI2}.registry.mirrors."docker.io"]\n  endpoint = ["https://mirror.gcr.io"]\n'
    )
    write(tmp_path, {"conf.d/registry.toml": conf})
    main = f"version = 2\nimports = ['{tmp_path}/conf.d/*.toml']\n"
    drop_in = str(tmp_path / "conf.d" / "registry.toml")
    assert only(run(tmp_path, "harbor.local/x:1", {"config.toml": main})) == (
        FAIL,
        drop_in,
        5,
        "registry.mirrors.\"docker.io\" is set beside config_path = '/etc/containerd/certs.d' "
        f"(from {drop_in}): containerd's CRI plugin does not load (\"`mirrors` cannot be set when "
        '`config_path` is provided"; 1.6, 1.7 and 2.x alike): containerd runs, but the kubelet '
        "can pull and run nothing (pyctl follows config_path)",
        "delete the mirrors tables and write /etc/containerd/certs.d/docker.io/hosts.toml with "
        'a [host."ENDPOINT"] table per mirror (capabilities = ["pull", "resolve"])',
    )


def test_config_path_beside_configs_tls_in_containerd_1(tmp_path: Path) -> None:
    conf = (
        f"version = 2\n[{CRI2}.registry]\n  config_path = '/x'\n"
        f'[{CRI2}.registry.configs."harbor.local".tls]\n  ca_file = "/ca.pem"\n'
    )
    (found,) = [f for f in problems(run(tmp_path, "h.example", {"config.toml": conf}))]
    assert found[:3] == (FAIL, str(tmp_path / "config.toml"), 4)
    assert '"`configs.tls` cannot be set when `config_path` is provided"' in found[3]


@pytest.mark.parametrize(
    ("endpoint", "severity", "message", "fix"),
    [
        (
            "registry.cn-hangzhou.aliyuncs.com/google_containers",
            FAIL,
            "has no scheme (containerd makes it https://registry.cn-hangzhou.aliyuncs.com/"
            "google_containers) and has the path '/google_containers', which containerd uses as "
            "the registry API root as written (no /v2 added): requests go to "
            "https://registry.cn-hangzhou.aliyuncs.com/google_containers/<name>/manifests/<tag>, "
            "where no registry answers, and every pull falls through to registry.k8s.io",
            'write "https://registry.cn-hangzhou.aliyuncs.com/v2/google_containers"',
        ),
        (
            "mirror.example:5000",
            WARN,
            "has no scheme (containerd makes it https://mirror.example:5000) and works, but a "
            "plain-HTTP mirror needs http:// written",
            'write "https://mirror.example:5000"',
        ),
        (
            "https://mirror.example/",
            FAIL,
            "has the path '/', which containerd uses as the registry API root as written (no /v2 "
            "added): requests go to https://mirror.example/<name>/manifests/<tag>, where no "
            "registry answers, and every pull falls through to registry.k8s.io",
            'write "https://mirror.example" (no trailing /)',
        ),
    ],
)
def test_legacy_mirror_endpoints(
    tmp_path: Path, endpoint: str, severity: Severity, message: str, fix: str
) -> None:
    conf = (
        f'version = 2\n[{CRI2}.registry.mirrors."registry.k8s.io"]\n'
        f'  endpoint = ["https://ok.example", {json.dumps(endpoint)}, "https://ok.example/v2/x"]\n'
    )
    assert only(run(tmp_path, "registry.k8s.io/pause:3.9", {"config.toml": conf})) == (
        severity,
        str(tmp_path / "config.toml"),
        3,
        f'registry.mirrors."registry.k8s.io" endpoint {endpoint!r} {message}',
        fix,
    )


def test_mirrors_of_other_registries_are_not_this_check(tmp_path: Path) -> None:
    conf = f'version = 2\n[{CRI2}.registry.mirrors."quay.io"]\n  endpoint = ["bad host/x"]\n'
    assert problems(run(tmp_path, "harbor.local/x", {"config.toml": conf})) == []


def test_a_mirror_table_named_by_url(tmp_path: Path) -> None:
    conf = f'version = 2\n[{CRI2}.registry.mirrors."https://harbor.local"]\n  endpoint = []\n'
    assert only(run(tmp_path, "harbor.local/x", {"config.toml": conf})) == (
        FAIL,
        str(tmp_path / "config.toml"),
        2,
        'registry.mirrors."https://harbor.local": containerd looks mirrors up by the image\'s '
        "registry host (harbor.local), never by a URL: this table never applies",
        'name the table registry.mirrors."harbor.local"',
    )


def test_relative_glob_import_warns_for_old_containerd(tmp_path: Path) -> None:
    main = 'version = 2\n\nimports = ["conf.d/*.toml"]\n'
    assert only(run(tmp_path, "harbor.local", {"config.toml": main})) == (
        WARN,
        str(tmp_path / "config.toml"),
        3,
        "imports 'conf.d/*.toml', a relative glob: containerd before 1.6.29 and 1.7.16 (Debian "
        "12 ships 1.6.20) matches it against its working directory (/ under systemd), not this "
        "file's directory, and imports nothing",
        f"write the absolute pattern '{tmp_path}/conf.d/*.toml'",
    )


def test_missing_import_and_broken_drop_in_are_findings_not_errors(tmp_path: Path) -> None:
    main = f'version = 2\nimports = ["{tmp_path}/none.toml", "{tmp_path}/bad.toml"]\n'
    found = problems(
        run(tmp_path, "harbor.local", {"config.toml": main, "bad.toml": "\n[plugins\n"})
    )
    assert found[0] == (
        FAIL,
        str(tmp_path / "config.toml"),
        2,
        f"imports {tmp_path}/none.toml, which does not exist: containerd does not start",
        f"create {tmp_path}/none.toml or remove it from imports",
    )
    assert found[1][:3] == (FAIL, str(tmp_path / "bad.toml"), 2)
    assert found[1][3].startswith("invalid TOML: ") and found[1][4] == "fix the TOML syntax"
    assert len(found) == 2


def test_a_drop_in_of_a_higher_version(tmp_path: Path) -> None:
    main = f'version = 2\nimports = ["{tmp_path}/d.toml"]\n'
    found = problems(run(tmp_path, "h.example", {"config.toml": main, "d.toml": "\nversion = 3\n"}))
    assert found == [
        (
            FAIL,
            str(tmp_path / "d.toml"),
            2,
            f"version 3 is higher than version 2 of {tmp_path}/config.toml: containerd 2.x does "
            'not start ("drop-in config version 3 higher than root config version 2")',
            "write every file for one version",
        )
    ]


def test_no_containerd_config_at_the_default_path_is_fine(tmp_path: Path) -> None:
    settings = Settings(containerd_config=str(tmp_path / "none.toml"), hosts_dir=(str(tmp_path),))
    found = lint(settings, "harbor.local")
    assert found[0] == Finding(
        OK,
        str(tmp_path / "none.toml"),
        None,
        "no containerd config here: containerd's defaults apply",
    )
    assert problems(found) == []


# --- hosts directories ---------------------------------------------------------------------------


def test_a_port_443_directory_for_a_reference_without_port(tmp_path: Path) -> None:
    (tmp_path / "certs.d" / "harbor.local:443").mkdir(parents=True)
    (tmp_path / "certs.d" / "harbor.local:8443").mkdir(parents=True)
    found = problems(run(tmp_path, "harbor.local/x:1"))
    d = tmp_path / "certs.d"
    assert found == [
        (
            FAIL,
            str(d / "harbor.local:443"),
            None,
            "is for harbor.local:443: containerd looks up harbor.local/ (then _default/) for "
            "harbor.local and never matches it",
            f"rename it to {d / 'harbor.local'}",
        ),
        (
            WARN,
            str(d / "harbor.local:8443"),
            None,
            "is for harbor.local:8443, not harbor.local",
            f"if it is meant for this registry, rename it to {d / 'harbor.local'}",
        ),
    ]


@pytest.mark.parametrize("name", ["https_harbor.local", "https:/harbor.local", "http:harbor.local"])
def test_a_directory_named_with_a_scheme(tmp_path: Path, name: str) -> None:
    (tmp_path / "certs.d" / name).mkdir(parents=True)
    d = tmp_path / "certs.d"
    assert only(run(tmp_path, "harbor.local/x:1")) == (
        FAIL,
        str(d / name),
        None,
        f"is named with a URL scheme: containerd looks up {d / 'harbor.local'}/ (host and port "
        "only) and never matches it",
        f"rename it to {d / 'harbor.local'}",
    )


def test_default_of_an_earlier_root_shadows_a_later_one(tmp_path: Path) -> None:
    write(tmp_path, {"a/_default/hosts.toml": "", "b/harbor.local/hosts.toml": ""})
    settings = Settings(containerd_config="", hosts_dir=(str(tmp_path / "a"), str(tmp_path / "b")))
    assert problems(lint(settings, "harbor.local")) == [
        (
            WARN,
            str(tmp_path / "b" / "harbor.local"),
            None,
            f"is never used for harbor.local: {tmp_path}/a/_default in an earlier hosts "
            "directory matches first",
            f"move it to {tmp_path}/a/harbor.local",
        )
    ]


def test_config_path_naming_a_missing_directory(tmp_path: Path) -> None:
    conf = f"version = 2\n[{CRI2}.registry]\n  config_path = '{tmp_path}/nope'\n"
    found = problems(run(tmp_path, "harbor.local", {"config.toml": conf}, certs=None))
    assert found[0] == (
        WARN,
        str(tmp_path / "config.toml"),
        3,
        f"config_path names {tmp_path}/nope, which is not a directory: containerd finds no "
        "hosts.toml there",
        f"create {tmp_path}/nope (one directory per registry host in it) or fix config_path",
    )


def test_a_hosts_toml_the_cri_plugin_does_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No config_path: containerd's CRI plugin does not read the default certs.d (pyctl does)."""
    import pyctl.registry.hosts.certsd
    import pyctl.registry.lint.hostsdirs

    certs = str(tmp_path / "etc-certs.d")
    for module in (pyctl.registry.hosts.certsd, pyctl.registry.lint.hostsdirs):
        monkeypatch.setattr(module, "DEFAULT_HOSTS_DIRS", (certs,))
    write(tmp_path, {"etc-certs.d/harbor.local/hosts.toml": '[host."https://harbor.local"]\n'})
    found = problems(run(tmp_path, "harbor.local", {"config.toml": "version = 2\n"}, certs=None))
    assert found == [
        (
            WARN,
            str(tmp_path / "config.toml"),
            None,
            "sets no config_path: the CRI plugin of containerd 1.6, 1.7, 2.0 and 2.1 does not read "
            f"{certs}/harbor.local (pyctl, nerdctl and ctr --hosts-dir do), so the kubelet's pulls "
            "ignore it; 2.2 and later read /etc/containerd/certs.d and /etc/docker/certs.d by "
            "default",
            f'add config_path = "{certs}" to [{CRI2}.registry]',
        )
    ]


# --- hosts.toml -----------------------------------------------------------------------------------


def hosts_toml(tmp_path: Path, text: str, host: str = "harbor.local") -> tuple[str, str]:
    d = tmp_path / "certs.d" / host
    write(d, {"hosts.toml": text})
    return str(d / "hosts.toml"), str(d)


SERVER = 'server = "https://harbor.local"\n'
MIRROR = '[host."https://mirror.local"]\n  capabilities = ["pull", "resolve"]\n'


def test_unknown_hosts_toml_keys(tmp_path: Path) -> None:
    path, _ = hosts_toml(
        tmp_path,
        SERVER
        + "skip-verify = true\n"
        + MIRROR
        + '  ca_file = "x"\n  server = "y"\n  mirror = 1\n',
    )
    assert problems(run(tmp_path, "harbor.local/x")) == [
        (
            FAIL,
            path,
            2,
            "top level: containerd does not know the key 'skip-verify' and ignores it (it knows "
            "server, capabilities, ca, client, skip_verify, header, override_path, dial_timeout, "
            "host)",
            "rename it to 'skip_verify'",
        ),
        (
            FAIL,
            path,
            5,
            "[host.\"https://mirror.local\"]: containerd does not know the key 'ca_file' and "
            "ignores it (it knows capabilities, ca, client, skip_verify, header, override_path, "
            "dial_timeout)",
            "rename it to 'ca'",
        ),
        (
            FAIL,
            path,
            6,
            '[host."https://mirror.local"]: server is a top-level key; containerd ignores it in '
            "a [host] table (the table's name is the host's URL)",
            "remove it here, or move it to the top level",
        ),
        (
            FAIL,
            path,
            7,
            "[host.\"https://mirror.local\"]: containerd does not know the key 'mirror' and "
            "ignores it (it knows capabilities, ca, client, skip_verify, header, override_path, "
            "dial_timeout)",
            "remove it",
        ),
    ]


@pytest.mark.parametrize(
    ("caps", "severity", "message", "fix"),
    [
        (
            '["pul", "mirror"]',
            FAIL,
            "unknown capability 'pul' (containerd knows pull, resolve, push, and referrers since "
            "2.2); " + REJECTS,
            'write capabilities = ["pull"]',
        ),
        (
            '["pull", "referrers"]',
            WARN,
            '"referrers" is known to containerd 2.2 and later only: 1.6 to 2.1 reject the whole '
            'file ("unknown capability referrers") and use only the *.crt / *.cert files of {dir}',
            'drop "referrers" unless every node runs 2.2 or later',
        ),
    ],
)
def test_capabilities(
    tmp_path: Path, caps: str, severity: Severity, message: str, fix: str
) -> None:
    path, d = hosts_toml(
        tmp_path, SERVER + f'[host."https://mirror.local"]\n  capabilities = {caps}\n'
    )
    assert only(run(tmp_path, "harbor.local/x")) == (
        severity,
        path,
        3,
        '[host."https://mirror.local"] capabilities: ' + message.format(dir=d),
        fix,
    )


@pytest.mark.parametrize(
    ("server", "bad", "fix"),
    [
        (
            "httpd.example.com",
            "containerd reads it as 'httpd.example.com', which names no host",
            "httpd.example.com",
        ),
        (
            "http//harbor.local",
            "containerd reads it as 'http//harbor.local', which names no host",
            "harbor.local",
        ),
        ("ftp://harbor.local", "is not an http or https URL", "harbor.local"),
    ],
)
def test_server_that_is_not_a_url(tmp_path: Path, server: str, bad: str, fix: str) -> None:
    path, _ = hosts_toml(tmp_path, f'server = "{server}"\n' + MIRROR)
    assert only(run(tmp_path, "harbor.local/x")) == (
        FAIL,
        path,
        1,
        f'server = "{server}": {bad}: containerd takes it for no server at all and pulls from '
        "harbor.local itself",
        f'write "https://{fix}" (or http:// for plain HTTP)',
    )


def test_a_host_written_as_an_inline_table(tmp_path: Path) -> None:
    path, _ = hosts_toml(tmp_path, SERVER + MIRROR + '[host]\n"https://b.local" = { ca = "x" }\n')
    found = problems(run(tmp_path, "harbor.local/x"))
    assert found == [
        (
            FAIL,
            path,
            5,
            "host 'https://b.local' is not written as a [host.\"https://b.local\"] table: "
            "containerd 2.x (and pyctl) read only hosts named by table headers and ignore it "
            "(1.6/1.7 read it)",
            'write it as [host."https://b.local"] with its keys below',
        )
    ]


def test_no_host_table_warns_for_containerd_1(tmp_path: Path) -> None:
    path, d = hosts_toml(tmp_path, SERVER + "skip_verify = true\n")
    assert only(run(tmp_path, "harbor.local/x")) == (
        WARN,
        path,
        None,
        'has no [host."…"] table: containerd 1.6 (all releases; Debian 12 ships 1.6.20) and 1.7 '
        'before 1.7.32 reject it ("invalid `host` tree") and use only the *.crt / *.cert files '
        f"of {d}, so its server and ca are ignored there",
        'add [host."https://harbor.local"] with capabilities = ["pull", "resolve", "push"] and '
        "the skip_verify of the top level",
    )


def test_wrong_types_and_dial_timeout(tmp_path: Path) -> None:
    path, d = hosts_toml(
        tmp_path,
        SERVER + MIRROR + '  skip_verify = "yes"\n  dial_timeout = "3s"\n'
        '[host."https://c.local"]\n  dial_timeout = "soon"\n',
    )
    assert problems(run(tmp_path, "harbor.local/x")) == [
        (
            FAIL,
            path,
            4,
            '[host."https://mirror.local"] skip_verify: "yes" is not true or false; '
            + REJECTS.format(dir=d),
            "write skip_verify = true",
        ),
        (
            WARN,
            path,
            5,
            '[host."https://mirror.local"] dial_timeout: containerd before 2.1 does not know it '
            "and ignores it",
            "keep it if the nodes run containerd 2.1 or later",
        ),
        (
            FAIL,
            path,
            7,
            '[host."https://c.local"] dial_timeout: "soon" is not a duration; '
            + REJECTS.format(dir=d),
            'write dial_timeout = "5s"',
        ),
    ]


def test_invalid_hosts_toml(tmp_path: Path) -> None:
    path, d = hosts_toml(tmp_path, SERVER + '[host."https://x"\n')
    (found,) = problems(run(tmp_path, "harbor.local/x"))
    assert found[:3] == (FAIL, path, 2)
    assert found[3].startswith("invalid TOML: ") and found[3].endswith(REJECTS.format(dir=d))


def test_what_only_pyctl_refuses(tmp_path: Path) -> None:
    path, _ = hosts_toml(
        tmp_path, SERVER + MIRROR + '  [host."https://mirror.local".header]\n    "bad name" = "x"\n'
    )
    assert only(run(tmp_path, "harbor.local/x")) == (
        FAIL,
        path,
        None,
        f"pyctl cannot use it: {path}: host 'https://mirror.local': invalid header name 'bad name'",
        "fix what the message names",
    )


def test_a_crt_beside_a_hosts_toml_is_not_read(tmp_path: Path) -> None:
    path, d = hosts_toml(tmp_path, SERVER + MIRROR)
    (Path(d) / "ca.crt").write_text("x")
    assert only(run(tmp_path, "harbor.local/x")) == (
        WARN,
        path,
        None,
        f"{d}/ca.crt is not read: containerd reads *.crt files only without a hosts.toml",
        'name it where it is needed: ca = "ca.crt"',
    )


# --- certificates --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


class Authority:
    """A throw-away CA writing PEM files (the integration tests have the full test bed one)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = self._sign("lint test CA", self.key.public_key(), ca=True)
        self.cert_path = directory / "ca.crt"
        self.cert_path.write_bytes(self.pem)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(Encoding.PEM)

    def _sign(
        self, name: str, public: Any, *, ca: bool = False, days: tuple[int, int] = (-1, 30)
    ) -> x509.Certificate:
        now = dt.datetime.now(dt.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        issuer = subject if ca else self.cert.subject
        return (
            x509.CertificateBuilder(
                issuer_name=issuer,
                subject_name=subject,
                public_key=public,
                serial_number=x509.random_serial_number(),
                not_valid_before=now + dt.timedelta(days=days[0]),
                not_valid_after=now + dt.timedelta(days=days[1]),
            )
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    def issue(self, name: str, days: tuple[int, int] = (-1, 30)) -> Pair:
        """A leaf certificate CN=name and its key, valid from/until now + ``days``."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._sign(name, key.public_key(), days=days)
        pair = Pair(self.dir / f"{name}.crt", self.dir / f"{name}.key")
        pair.cert.write_bytes(cert.public_bytes(Encoding.PEM))
        pair.key.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
        return pair


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    return Authority(tmp_path_factory.mktemp("ca"))


def test_a_healthy_setup_has_no_problems(tmp_path: Path, authority: Authority) -> None:
    client = authority.issue("healthy-client")
    path, _d = hosts_toml(
        tmp_path,
        SERVER + '[host."https://harbor.local"]\n  capabilities = ["pull", "resolve", "push"]\n'
        f'  ca = "{authority.cert_path}"\n  client = [["{client.cert}", "{client.key}"]]\n',
    )
    conf = f"version = 2\n[{CRI2}.registry]\n  config_path = '{tmp_path}/certs.d'\n"
    found = run(tmp_path, "harbor.local/team/app:1", {"config.toml": conf}, certs=None)
    assert problems(found) == []
    until = f"{dt.datetime.now(dt.UTC) + dt.timedelta(days=30):%Y-%m-%d}"
    assert [(f.file, f.line, f.message) for f in found] == [
        (str(tmp_path / "config.toml"), None, "containerd config, version 2"),
        (path, None, "applies to harbor.local"),
        (
            path,
            4,
            f'[host."https://harbor.local"] ca {authority.cert_path}: certificate CN=lint test '
            f"CA, valid until {until}",
        ),
        (
            path,
            5,
            f'[host."https://harbor.local"] client {client.cert}: client certificate '
            f"CN=healthy-client, valid until {until}, key {client.key}",
        ),
    ]


def test_ca_missing_not_pem_der_and_expired(tmp_path: Path, authority: Authority) -> None:
    expired = authority.issue("expired", days=(-30, -1))
    der = tmp_path / "ca.der"
    der.write_bytes(authority.cert.public_bytes(Encoding.DER))
    path, d = hosts_toml(
        tmp_path,
        SERVER + MIRROR + f'  ca = ["missing.crt", "{tmp_path}/junk", "{der}", "{expired.cert}"]\n',
    )
    (tmp_path / "junk").write_text("not a certificate\n")
    pulls = "containerd fails every pull from harbor.local"
    label = '[host."https://mirror.local"] ca'
    found = problems(run(tmp_path, "harbor.local/x"))
    assert found[:3] == [
        (
            FAIL,
            path,
            4,
            f"{label} {d}/missing.crt does not exist: {pulls}",
            f"put the registry's CA certificate (PEM) at {d}/missing.crt, or fix the path",
        ),
        (
            FAIL,
            path,
            4,
            f"{label} {tmp_path}/junk holds no PEM certificate: {pulls}",
            NOT_PEM_FIX,
        ),
        (
            FAIL,
            path,
            4,
            f"{label} {der} holds no PEM certificate: {pulls}",
            f"convert it: openssl x509 -inform der -in {der} -out {der}.pem, and name that",
        ),
    ]
    (sev, file, line, message, fix) = found[3]
    assert (sev, file, line, fix) == (
        FAIL,
        path,
        4,
        f"replace {expired.cert} with the CA's current certificate",
    )
    assert message.startswith(f"{label} {expired.cert}: certificate CN=expired expired on ")
    assert message.endswith(" UTC: no server certificate verifies through it")
    assert len(found) == 4


def test_a_certificate_not_valid_yet(tmp_path: Path, authority: Authority) -> None:
    now = dt.datetime.now(dt.UTC)
    future = authority.issue("future", days=(2, 9))
    path, _ = hosts_toml(tmp_path, SERVER + MIRROR + f'  ca = "{future.cert}"\n')
    (sev, file, line, message, _fix) = only(run(tmp_path, "harbor.local/x"))
    assert (sev, file, line) == (FAIL, path, 4)
    assert (
        f"certificate CN=future is not valid before {now + dt.timedelta(days=2):%Y-%m-%d}"
        in message
    )


def test_client_certificates(tmp_path: Path, authority: Authority) -> None:
    a = authority.issue("client-a")
    b = authority.issue("client-b")
    old = authority.issue("client-old", days=(-30, -1))
    combined = tmp_path / "combined.pem"
    combined.write_bytes(a.cert.read_bytes() + a.key.read_bytes())
    _path, d = hosts_toml(
        tmp_path,
        SERVER
        + MIRROR
        + f'  client = [["{a.cert}", "{b.key}"], "{a.cert}", ["{a.cert}", ""], "{combined}", '
        f'["{old.cert}", "{old.key}"]]\n',
    )
    pulls = "containerd fails every pull from harbor.local"
    label = '[host."https://mirror.local"] client'
    found = [f for f in run(tmp_path, "harbor.local/x") if f.line == 4]
    assert [(f.severity, f.message, f.fix) for f in found[:4]] == [
        (
            FAIL,
            f"{label} {a.cert}: the key in {b.key} does not belong to this certificate: {pulls} "
            '("tls: private key does not match public key")',
            f"pair {a.cert} with the key it was issued for",
        ),
        (
            FAIL,
            f"{label} {a.cert}: no PEM private key in {a.cert}: {pulls}",
            f'name its key too: client = [["{a.cert}", "KEY"]]',
        ),
        (
            FAIL,
            f'{label} ["{a.cert}", ""]: containerd makes the empty key path absolute, i.e. the '
            f'directory {d}, and fails every pull from harbor.local ("unable to read CERT file '
            '… is a directory")',
            f'write client = "{a.cert}" when the key is in the same file, or ["{a.cert}", "KEY"]',
        ),
        (
            OK,
            f"{label} {combined}: client certificate CN=client-a, valid until "
            f"{dt.datetime.now(dt.UTC) + dt.timedelta(days=30):%Y-%m-%d}, key {combined}",
            "",
        ),
    ]
    assert found[4].severity is FAIL and found[4].fix == f"renew the client certificate {old.cert}"
    assert "client certificate CN=client-old expired on" in found[4].message
    assert found[4].message.endswith(": the registry refuses it")


def test_an_encrypted_client_key(tmp_path: Path, authority: Authority) -> None:
    a = authority.issue("client-enc")
    key = load_pem_private_key(a.key.read_bytes(), password=None)
    enc = tmp_path / "enc.key"
    enc.write_bytes(
        key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(b"pw"))
    )
    _path, _ = hosts_toml(tmp_path, SERVER + MIRROR + f'  client = [["{a.cert}", "{enc}"]]\n')
    (_, _, line, message, fix) = only(run(tmp_path, "harbor.local/x"))
    assert line == 4
    assert "the private key is encrypted (containerd cannot use it)" in message
    assert fix == f"put the certificate's unencrypted PEM key at {enc}"


def test_docker_style_certificate_directory(tmp_path: Path, authority: Authority) -> None:
    a = authority.issue("dir-a")
    b = authority.issue("dir-b")
    d = tmp_path / "certs.d" / "harbor.local:5000"
    d.mkdir(parents=True)
    (d / "ca.crt").write_bytes(authority.pem)
    (d / "bad.crt").write_text("junk")
    (d / "client.cert").write_bytes(a.cert.read_bytes())
    (d / "client.key").write_bytes(b.key.read_bytes())
    (d / "lonely.key").write_bytes(b.key.read_bytes())
    (d / "ca.pem").write_bytes(authority.pem)
    found = run(tmp_path, "harbor.local:5000/x")
    assert problems(found) == [
        (
            FAIL,
            str(d / "bad.crt"),
            None,
            f"CA file {d}/bad.crt holds no PEM certificate: containerd fails every pull from "
            "harbor.local:5000",
            NOT_PEM_FIX,
        ),
        (
            FAIL,
            str(d / "client.cert"),
            None,
            f"client certificate {d}/client.cert: the key in {d}/client.key does not belong to "
            'this certificate: containerd fails every pull from harbor.local:5000 ("tls: private '
            'key does not match public key")',
            f"pair {d}/client.cert with the key it was issued for",
        ),
        (
            WARN,
            str(d / "lonely.key"),
            None,
            "has no .cert beside it: containerd ignores it (docker refuses the directory)",
            f"name the client certificate {d}/lonely.cert",
        ),
        (
            WARN,
            str(d / "ca.pem"),
            None,
            "is not read: containerd reads *.crt (CA) and *.cert + *.key (client) here",
            "rename it to ca.crt if it is the CA",
        ),
    ]
    assert (OK, str(d)) == (found[0].severity, found[0].file)


def test_legacy_cri_tls_files(tmp_path: Path, authority: Authority) -> None:
    a = authority.issue("legacy-a")
    b = authority.issue("legacy-b")
    conf = (
        f'version = 2\n[{CRI2}.registry.configs."harbor.local".tls]\n'
        f'  ca_file = "{tmp_path}/none.pem"\n  cert_file = "{a.cert}"\n  key_file = "{b.key}"\n'
    )
    found = problems(run(tmp_path, "harbor.local/x", {"config.toml": conf}))
    label = 'registry.configs."harbor.local".tls'
    assert [(f[0], f[1], f[2], f[3].split(": ")[0]) for f in found] == [
        (
            FAIL,
            str(tmp_path / "config.toml"),
            3,
            f"{label}.ca_file {tmp_path}/none.pem does not exist",
        ),
        (FAIL, str(tmp_path / "config.toml"), 4, f"{label}.cert_file {a.cert}"),
    ]


# --- odds and ends -------------------------------------------------------------------------------


def test_registry_of() -> None:
    assert registry_of("harbor.local") == "harbor.local"
    assert registry_of("busybox") == "docker.io"
    assert registry_of("index.docker.io") == "docker.io"
    assert registry_of("localhost:5000/x:1") == "localhost:5000"
    with pytest.raises(InvalidReferenceError):
        registry_of("Harbor.local/UPPER")


def test_finding_json_and_where() -> None:
    f = Finding(FAIL, "/etc/containerd/config.toml", 12, "m", "f")
    assert f.where == "/etc/containerd/config.toml:12"
    assert f.as_dict() == {
        "severity": "FAIL",
        "file": "/etc/containerd/config.toml",
        "line": 12,
        "message": "m",
        "fix": "f",
    }
    assert Finding(OK, "/x", None, "m").where == "/x"


def test_toml_lines() -> None:
    text = (
        'version = 2 # [not]\ns = """\n[not.a.table]\n"""\narr = [\n  "]", { x = 1 },\n]\n'
        '[plugin."a.b".registry]\n  k.j = { inner = 1, "q.k" = { z = 2 } }\n'
        "[[host.'x'.y]]\n[ host . \"x\" ]\nca = 'c'\n"
    )
    lines = TomlLines(text)
    assert lines.line("version") == 1
    assert lines.line("s") == 2 and lines.line("not") is None
    assert lines.line("arr") == 5
    assert lines.line("plugin") == 8 and lines.line("plugin", "a.b", "registry") == 8
    assert lines.line("plugin", "a.b", "registry", "k", "j", "q.k", "z") == 9
    assert lines.line("host", "x", "y") == 10 and lines.line("host", "x", "ca") == 12
    assert [line for _, line in lines.headers()] == [8, 10, 11]


def test_a_loaded_registry_config_gives_the_same_findings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pyctl.registry.connect import RegistryConfig

    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    conf = f'version = 2\n[{CRI2}.registry.mirrors."harbor.local"]\n  endpoint = ["m.example/x"]\n'
    write(tmp_path, {"config.toml": conf, "certs.d/harbor.local:443/hosts.toml": ""})
    settings = Settings(
        containerd_config=str(tmp_path / "config.toml"),
        hosts_dir=(str(tmp_path / "certs.d"),),
        sources={"containerd_config": "flag"},
    )
    found = lint(settings, "harbor.local/x")
    assert [f.line for f in found if f.severity is FAIL] == [3, None]
    assert lint(RegistryConfig.load(settings), "harbor.local/x") == found
