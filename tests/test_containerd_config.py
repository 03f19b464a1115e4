"""containerd's config with its imports (pyctl.registry.hosts.containerd_config), and what the
hosts configuration takes from it: the rules of containerd's LoadConfig / resolveImports /
mergeConfig, for 1.6/1.7 and for 2.x (checked against real containerd binaries in
integration/test_containerd_config_imports.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pyctl.errors import ConfigError
from pyctl.registry.hosts.containerd_config import (
    ConfigFile,
    ContainerdConfig,
    Origin,
    Rules,
    is_secret,
    load_containerd_config,
    resolve_imports,
)
from pyctl.registry.hosts.cri import cri_registry_config
from pyctl.registry.hosts.model import CriRegistryConfig
from pyctl.registry.hosts.resolve import resolve_hosts

V2 = 'plugins."io.containerd.grpc.v1.cri"'


def load_cri_config(path: str, *, required: bool = False) -> CriRegistryConfig:
    """The CRI registry settings of containerd's config at ``path`` and its imports."""
    return cri_registry_config(load_containerd_config(path, required=required))


V3 = 'plugins."io.containerd.cri.v1.images"'


def write(root: Path, rel: str, text: str) -> str:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def config_path(key: str, value: str) -> str:
    """A registry table setting ``config_path`` under plugin table ``key``."""
    return f"[{key}.registry]\n  config_path = {json.dumps(value)}\n"


def paths(cd: ContainerdConfig) -> list[str]:
    return [f.path for f in cd.files]


# --- finding the files ------------------------------------------------------------------------


def test_glob_imports_are_sorted_and_include_dotfiles(tmp_path: Path) -> None:
    main = write(tmp_path, "config.toml", 'version = 2\nimports = ["conf.d/*.toml"]\n')
    for name in ["b.toml", "a.toml", ".hidden.toml", "c.txt"]:
        write(tmp_path, f"conf.d/{name}", config_path(V2, f"/certs/{name}"))
    cd = load_containerd_config(main)
    d = tmp_path / "conf.d"
    assert paths(cd) == [main, f"{d}/.hidden.toml", f"{d}/a.toml", f"{d}/b.toml"]
    assert [f.imported_by for f in cd.files] == ["", main, main, main]
    # the last file read wins
    assert cd.registry == {"config_path": "/certs/b.toml"}
    assert cd.origins == {("config_path",): Origin(f"{d}/b.toml", f"{V2}.registry")}


def test_a_glob_matching_nothing_imports_nothing(tmp_path: Path) -> None:
    main = write(
        tmp_path,
        "config.toml",
        'version = 2\nimports = ["conf.d/*.toml", "/nonexistent/*/x*.toml"]\n'
        + config_path(V2, "/main"),
    )
    cd = load_containerd_config(main)
    assert paths(cd) == [main]
    assert cd.registry == {"config_path": "/main"}


def test_relative_imports_are_relative_to_the_importing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    main = write(tmp_path, "etc/config.toml", 'version = 2\nimports = ["conf.d/a.toml"]\n')
    a = write(tmp_path, "etc/conf.d/a.toml", 'imports = ["../../other/*.toml", "./b.toml"]\n')
    b = write(tmp_path, "etc/conf.d/b.toml", config_path(V2, "/from-b"))
    c = write(tmp_path, "other/c.toml", config_path(V2, "/from-c"))
    # decoys where the working directory would resolve the same names (containerd before
    # 1.6.29 / 1.7.16 globbed relative patterns there)
    write(tmp_path, "cwd/conf.d/a.toml", config_path(V2, "/decoy"))
    monkeypatch.chdir(tmp_path / "cwd")
    cd = load_containerd_config(main)
    assert paths(cd) == [main, a, c, b]
    assert [f.imported_by for f in cd.files] == ["", main, a, a]
    assert cd.registry == {"config_path": "/from-b"}


def test_resolve_imports_cleans_and_joins_like_go(tmp_path: Path) -> None:
    for name in ["config_1.toml", "config_2.toml", "test.toml"]:
        write(tmp_path, name, "")
    parent = str(tmp_path / "root.toml")
    assert resolve_imports(
        parent, [f"{tmp_path}/config_*.toml", f"{tmp_path}/./test.toml", "current.toml"]
    ) == [
        f"{tmp_path}/config_1.toml",
        f"{tmp_path}/config_2.toml",
        f"{tmp_path}/test.toml",
        f"{tmp_path}/current.toml",  # not globbed: kept even though it does not exist
    ]
    assert resolve_imports(parent, ["config_*.toml"]) == [
        f"{tmp_path}/config_1.toml",
        f"{tmp_path}/config_2.toml",
    ]
    # only "*" makes a glob: "?" and "[" alone are part of a plain path
    assert resolve_imports(parent, ["config_?.toml"]) == [f"{tmp_path}/config_?.toml"]


def test_imports_of_imports_are_read_breadth_first(tmp_path: Path) -> None:
    """containerd keeps a queue: main, its imports in order, then theirs (BFS)."""
    main = write(tmp_path, "main.toml", 'version = 2\nimports = ["a.toml", "b.toml"]\n')
    a = write(tmp_path, "a.toml", 'imports = ["c.toml"]\n' + config_path(V2, "/a"))
    b = write(tmp_path, "b.toml", config_path(V2, "/b"))
    c = write(tmp_path, "c.toml", config_path(V2, "/c"))
    cd = load_containerd_config(main)
    assert paths(cd) == [main, a, b, c]
    assert cd.registry == {"config_path": "/c"}  # c is read after b
    assert cd.origins[("config_path",)].file == c


def test_each_file_once_cycles_and_repeats(tmp_path: Path) -> None:
    main = write(
        tmp_path,
        "data1.toml",
        'version = 2\nimports = ["data2.toml", "data1.toml", "*.toml", "./data2.toml"]\n'
        + config_path(V2, "/one"),
    )
    two = write(tmp_path, "data2.toml", 'imports = ["data1.toml", "data2.toml"]\n')
    cd = load_containerd_config(main)
    assert paths(cd) == [main, two]
    # data1 is not read again after data2 (it would bring config_path back otherwise: same)
    assert cd.registry == {"config_path": "/one"}


# --- merging ------------------------------------------------------------------------------------

MAIN_V2 = f"""\
version = 2
imports = ["conf.d/*.toml"]
[{V2}]
  sandbox_image = "pause:3.9"
[{V2}.registry.mirrors."docker.io"]
  endpoint = ["https://mirror.example"]
[{V2}.registry.configs."mirror.example".tls]
  ca_file = "/main-ca.pem"
"""

DROP_IN_V2 = f"""\
[{V2}.registry]
  config_path = "/etc/containerd/certs.d"
[{V2}.registry.configs."mirror.example".tls]
  insecure_skip_verify = true
"""


def test_containerd_1_a_later_plugin_table_replaces_the_earlier_whole(tmp_path: Path) -> None:
    main = write(tmp_path, "config.toml", MAIN_V2)
    drop = write(tmp_path, "conf.d/registry.toml", DROP_IN_V2)
    cd = load_containerd_config(main)
    assert cd.rules is Rules.CONTAINERD_1
    assert "version 1 and 2" in cd.reason
    assert cd.registry == {
        "config_path": "/etc/containerd/certs.d",
        "configs": {"mirror.example": {"tls": {"insecure_skip_verify": True}}},
    }
    assert {o.file for o in cd.origins.values()} == {drop}
    # containerd 2.x would keep the main file's mirror and CA: the note says so
    assert "containerd 2.x merges plugin tables key by key" in cd.note
    assert f'mirrors."docker.io".endpoint = ["https://mirror.example"] from {main}' in cd.note
    assert f'configs."mirror.example".tls.ca_file = "/main-ca.pem" from {main}' in cd.note


def test_containerd_2_merges_plugin_tables_key_by_key(tmp_path: Path) -> None:
    main = write(tmp_path, "config.toml", MAIN_V2)
    drop = write(tmp_path, "conf.d/registry.toml", DROP_IN_V2)
    cd = load_containerd_config(main, rules=Rules.CONTAINERD_2)
    assert cd.registry == {
        "mirrors": {"docker.io": {"endpoint": ["https://mirror.example"]}},
        "configs": {
            "mirror.example": {"tls": {"ca_file": "/main-ca.pem", "insecure_skip_verify": True}}
        },
        "config_path": "/etc/containerd/certs.d",
    }
    assert {s.dotted: s.origin.file for s in cd.settings()} == {
        'mirrors."docker.io".endpoint': main,
        'configs."mirror.example".tls.ca_file': main,
        'configs."mirror.example".tls.insecure_skip_verify': drop,
        "config_path": drop,
    }
    assert cd.files_of("configs", "mirror.example", "tls") == (main, drop)
    assert cd.note == ""  # rules asked for: no comparison


def test_containerd_2_a_later_array_or_value_replaces_the_earlier(tmp_path: Path) -> None:
    main = write(
        tmp_path,
        "config.toml",
        f'version = 3\nimports = ["b.toml"]\n[{V3}.registry.mirrors."docker.io"]\n'
        '  endpoint = ["https://a.example", "https://b.example"]\n'
        f'[{V3}.registry.configs."h".auth]\n  username = "u"\n  password = "p"\n',
    )
    b = write(
        tmp_path,
        "b.toml",
        f'version = 3\n[{V3}.registry.mirrors."docker.io"]\n  endpoint = ["https://c.example"]\n'
        f'[{V3}.registry.configs."h".auth]\n  password = ""\n',
    )
    cd = load_containerd_config(main)
    assert cd.rules is Rules.CONTAINERD_2
    assert cd.registry["mirrors"] == {"docker.io": {"endpoint": ["https://c.example"]}}
    # an explicit empty string overrides too (mergo WithOverride on map values)
    assert cd.registry["configs"] == {"h": {"auth": {"username": "u", "password": ""}}}
    assert cd.files_of("configs", "h", "auth") == (main, b)


# --- versions -----------------------------------------------------------------------------------


def test_version_1_files(tmp_path: Path) -> None:
    """No ``version`` (or 1): the CRI plugin is ``plugins.cri``; a v2-style key is ignored by
    containerd 1.6/1.7 in a version 1 configuration (2.x would migrate and use it)."""
    main = write(
        tmp_path,
        "config.toml",
        'imports = ["d.toml"]\n[plugins.cri.registry.mirrors."docker.io"]\n'
        '  endpoint = ["https://m.example"]\n',
    )
    write(tmp_path, "d.toml", config_path(V2, "/ignored-by-1.x"))
    cd = load_containerd_config(main)
    assert cd.rules is Rules.CONTAINERD_1
    assert cd.registry == {"mirrors": {"docker.io": {"endpoint": ["https://m.example"]}}}
    assert cd.origins[("mirrors", "docker.io", "endpoint")] == Origin(main, "plugins.cri.registry")
    assert 'config_path = "/ignored-by-1.x"' in cd.note
    # containerd 2.x: "cri" is migrated to io.containerd.grpc.v1.cri, then to the images plugin
    cd2 = load_containerd_config(main, rules=Rules.CONTAINERD_2)
    assert cd2.registry == {
        "mirrors": {"docker.io": {"endpoint": ["https://m.example"]}},
        "config_path": "/ignored-by-1.x",
    }
    assert cd2.origins[("mirrors", "docker.io", "endpoint")].table == "plugins.cri.registry"


def test_version_2_drop_in_of_a_version_3_config_is_migrated(tmp_path: Path) -> None:
    main = write(
        tmp_path,
        "config.toml",
        f'version = 3\nimports = ["conf.d/*.toml"]\n[{V3}.registry.headers]\n  X-A = "1"\n',
    )
    v2 = write(tmp_path, "conf.d/10-v2.toml", "version = 2\n" + config_path(V2, "/certs.d"))
    v1 = write(
        tmp_path,
        "conf.d/20-v1.toml",
        'version = 1\n[plugins.cri.registry.configs."h".tls]\n  ca_file = "/ca.pem"\n',
    )
    cd = load_containerd_config(main)
    assert cd.rules is Rules.CONTAINERD_2
    assert "version 3 file" in cd.reason
    assert [f.version for f in cd.files] == [3, 2, 1]
    assert {s.dotted: s.origin for s in cd.settings()} == {
        "headers.X-A": Origin(main, f"{V3}.registry"),
        "config_path": Origin(v2, f"{V2}.registry"),
        "configs.h.tls.ca_file": Origin(v1, "plugins.cri.registry"),
    }


def test_a_drop_in_may_not_have_a_higher_version_than_the_root(tmp_path: Path) -> None:
    main = write(tmp_path, "config.toml", 'version = 2\nimports = ["d.toml"]\n')
    drop = write(tmp_path, "d.toml", "version = 3\n" + config_path(V3, "/x"))
    with pytest.raises(ConfigError) as info:
        load_containerd_config(main)
    msg = str(info.value)
    assert msg.startswith(f"containerd config {drop} (imported by {main}): version 3 is higher")
    assert f"version 2 of {main}" in msg and "\n" not in msg
    # a root without a version takes the first version set (containerd's rootConfigVersion)
    write(tmp_path, "config.toml", 'imports = ["d.toml"]\n')
    assert load_containerd_config(main).registry == {"config_path": "/x"}


def test_a_short_plugin_name_in_a_version_2_configuration_means_containerd_2(
    tmp_path: Path,
) -> None:
    main = write(tmp_path, "config.toml", 'version = 2\nimports = ["d.toml"]\n')
    drop = write(tmp_path, "d.toml", "[plugins.cri.registry]\n  config_path = '/x'\n")
    cd = load_containerd_config(main)
    assert cd.rules is Rules.CONTAINERD_2
    assert "short name" in cd.reason and drop in cd.reason
    assert cd.registry == {"config_path": "/x"}


def test_the_images_plugin_means_containerd_2(tmp_path: Path) -> None:
    main = write(tmp_path, "config.toml", "version = 2\n" + config_path(V3, "/x"))
    cd = load_containerd_config(main)
    assert cd.rules is Rules.CONTAINERD_2 and "io.containerd.cri.v1.images" in cd.reason
    assert cd.registry == {"config_path": "/x"}
    # as containerd 1.6/1.7 read it, there is no registry section at all
    assert load_containerd_config(main, rules=Rules.CONTAINERD_1).registry == {}


def test_same_view_under_both_rules_means_no_note(tmp_path: Path) -> None:
    main = write(
        tmp_path, "config.toml", 'version = 2\nimports = ["/nonexistent/*.toml", "d.toml"]\n'
    )
    write(tmp_path, "d.toml", config_path(V2, "/etc/containerd/certs.d"))
    cd = load_containerd_config(main)
    assert (cd.rules, cd.note) == (Rules.CONTAINERD_1, "")


def test_the_note_never_shows_a_secret(tmp_path: Path) -> None:
    main = write(
        tmp_path,
        "config.toml",
        f'version = 2\nimports = ["d.toml"]\n[{V2}.registry.configs."h".auth]\n'
        '  username = "u"\n  password = "hunter2"\n',
    )
    write(tmp_path, "d.toml", config_path(V2, "/x"))
    cd = load_containerd_config(main)
    assert "configs.h.auth.password = (secret)" in cd.note
    assert "hunter2" not in cd.note
    assert is_secret(("configs", "h", "auth", "identitytoken"))
    assert not is_secret(("configs", "h", "auth", "username"))
    assert not is_secret(("configs", "h", "tls", "ca_file"))


# --- errors: one line, naming the file ----------------------------------------------------------


def assert_one_line(info: pytest.ExceptionInfo[ConfigError], *parts: str) -> str:
    msg = str(info.value)
    assert "\n" not in msg, msg
    for part in parts:
        assert part in msg, msg
    return msg


def test_a_missing_import_that_is_not_a_glob(tmp_path: Path) -> None:
    main = write(tmp_path, "config.toml", 'version = 2\nimports = ["conf.d/registry.toml"]\n')
    with pytest.raises(ConfigError) as info:
        load_containerd_config(main)
    missing = tmp_path / "conf.d" / "registry.toml"
    msg = assert_one_line(info, f"containerd config {missing} (imported by {main}): no such file")
    assert "remove it from the imports" in msg


def test_a_missing_nested_import_names_its_importer(tmp_path: Path) -> None:
    main = write(tmp_path, "config.toml", 'version = 2\nimports = ["a.toml"]\n')
    a = write(tmp_path, "a.toml", 'imports = ["/nonexistent/b.toml"]\n')
    with pytest.raises(ConfigError) as info:
        load_containerd_config(main)
    assert_one_line(info, f"containerd config /nonexistent/b.toml (imported by {a})")


def test_an_unreadable_import(tmp_path: Path) -> None:
    """chmod 000 does not stop root from reading, so a directory stands in for the file:
    opening it succeeds but reading fails (EISDIR), for root too — as for containerd, whose
    decoder fails on it. A glob catching a subdirectory is the way it happens for real."""
    main = write(tmp_path, "config.toml", 'version = 2\nimports = ["conf.d/*"]\n')
    write(tmp_path, "conf.d/a.toml", "")
    (tmp_path / "conf.d" / "b.toml.d").mkdir()
    with pytest.raises(ConfigError) as info:
        load_containerd_config(main)
    assert_one_line(
        info,
        f"containerd config {tmp_path}/conf.d/b.toml.d (imported by {main}): cannot read it",
        "Is a directory",
    )
    # a path through a regular file fails for root too (ENOTDIR)
    write(tmp_path, "config.toml", 'version = 2\nimports = ["conf.d/a.toml/x.toml"]\n')
    with pytest.raises(ConfigError) as info:
        load_containerd_config(main)
    assert_one_line(info, "conf.d/a.toml/x.toml (imported by", "Not a directory")


def test_malformed_toml_in_an_import(tmp_path: Path) -> None:
    main = write(tmp_path, "config.toml", 'version = 2\nimports = ["d/*.toml"]\n')
    bad = write(tmp_path, "d/x.toml", f"[{V2}.registry\nconfig_path = 1\n")
    with pytest.raises(ConfigError) as info:
        load_containerd_config(main)
    assert_one_line(
        info, f"containerd config {bad} (imported by {main}): invalid TOML", "(at line 1"
    )


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('imports = "conf.d/*.toml"\n', "imports must be a list"),
        ('imports = ["conf.d/[*.toml"]\n', "not a valid glob pattern"),
        ('version = "2"\n', "version must be a number"),
        ("plugins = 1\n", "plugins must be a table"),
        (f"[{V2}]\nregistry = 1\n", "registry must be a table"),
        (b"\xff".decode("latin-1"), "not UTF-8"),
    ],
)
def test_bad_imported_file(tmp_path: Path, text: str, match: str) -> None:
    main = write(tmp_path, "config.toml", 'version = 2\nimports = ["d.toml"]\n')
    drop = tmp_path / "d.toml"
    drop.write_bytes(text.encode("latin-1"))
    with pytest.raises(ConfigError, match=match) as info:
        load_containerd_config(main)
    assert_one_line(info, f"containerd config {drop} (imported by {main})")


def test_missing_main_file(tmp_path: Path) -> None:
    path = str(tmp_path / "config.toml")
    assert load_containerd_config(path) == ContainerdConfig()
    assert load_containerd_config("") == ContainerdConfig()
    with pytest.raises(ConfigError, match="no such file"):
        load_containerd_config(path, required=True)


def test_a_wrong_value_names_the_file_that_set_it(tmp_path: Path) -> None:
    main = write(tmp_path, "config.toml", 'version = 2\nimports = ["d.toml"]\n')
    drop = write(tmp_path, "d.toml", f'[{V2}.registry.mirrors."x"]\n  endpoint = "https://m"\n')
    with pytest.raises(ConfigError) as info:
        load_cri_config(main)
    assert_one_line(
        info, f"containerd config {drop}: {V2}.registry.mirrors.x.endpoint must be a list"
    )


# --- what hosts.py makes of it ------------------------------------------------------------------


def test_legacy_settings_keep_the_file_they_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pyctl.config import Settings
    from pyctl.registry.connect import RegistryConfig

    main = write(
        tmp_path,
        "config.toml",
        f'version = 3\nimports = ["conf.d/*.toml"]\n[{V3}.registry.mirrors."docker.io"]\n'
        '  endpoint = ["https://mirror.example"]\n',
    )
    tls = write(
        tmp_path,
        "conf.d/10-tls.toml",
        f'version = 3\n[{V3}.registry.configs."mirror.example".tls]\n  ca_file = "/ca.pem"\n',
    )
    auth = write(
        tmp_path,
        "conf.d/20-auth.toml",
        f'version = 3\n[{V3}.registry.configs."mirror.example".auth]\n  username = "u"\n'
        '  password = "p"\n',
    )
    cri = load_cri_config(main)
    assert cri.path == main
    assert cri.mirrors_from == {"docker.io": (main,)}
    conf = cri.configs["mirror.example"]
    assert (conf.ca_file, conf.tls_from, conf.auth_from) == ("/ca.pem", (tls,), (auth,))
    mirror, upstream = resolve_hosts("docker.io", hosts_dirs=[], cri=cri)
    assert (mirror.host, mirror.ca, mirror.source) == (
        "mirror.example",
        ("/ca.pem",),
        f"{main}, {tls}",
    )
    assert upstream.source == "default"

    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    rc = RegistryConfig.load(
        Settings(containerd_config=main, sources={"containerd_config": "flag"})
    )
    cred = rc.credential("mirror.example")
    assert cred is not None and cred.source == f"CRI config {auth}"


def test_config_path_from_a_drop_in_gives_the_hosts_directory(tmp_path: Path) -> None:
    from pyctl.registry.hosts.certsd import hosts_dirs

    certs = tmp_path / "certs.d"
    main = write(tmp_path, "etc/config.toml", 'version = 2\nimports = ["conf.d/*.toml"]\n')
    drop = write(tmp_path, "etc/conf.d/registry.toml", config_path(V2, str(certs)))
    write(tmp_path, "certs.d/harbor.local/hosts.toml", 'server = "https://127.0.0.1:5443"\n')
    cri = load_cri_config(main)
    assert (cri.config_path, cri.config_path_from) == (str(certs), (drop,))
    dirs = hosts_dirs([], cri)
    assert dirs[0] == str(certs)
    [host] = resolve_hosts("harbor.local", hosts_dirs=dirs, cri=cri)
    assert (host.host, host.source) == ("127.0.0.1:5443", f"{certs}/harbor.local/hosts.toml")


def test_config_file_describes_itself() -> None:
    assert str(ConfigFile("/a.toml")) == "containerd config /a.toml"
    assert str(ConfigFile("/b.toml", "/a.toml", 2)) == (
        "containerd config /b.toml (imported by /a.toml)"
    )
    assert os.sep == "/"  # these rules are Linux's
