"""containerd's own config, linted: each file (with its imports) and the merged registry section.

Facts from containerd's source (``services/server/config/config.go`` in 1.6/1.7,
``cmd/containerd/server/config/config.go`` and ``plugins/cri/images/plugin.go`` in 2.x, the CRI
``Registry`` struct and ``ValidatePluginConfig`` / ``ValidateImageConfig``), tried on 1.6.20,
1.7.34 and 2.3.4 with ``containerd config dump`` and by starting them:

* Unknown keys and tables are ignored: silently by 1.6/1.7 (go-toml v1), with a log line
  ("Ignoring unknown key in TOML") by 2.x.
* The CRI registry section is ``plugins.cri.registry`` in a version 1 config for 1.6/1.7 (a
  full plugin name is ignored there), ``plugins."io.containerd.grpc.v1.cri".registry`` in
  version 2 (``plugins.cri`` stops 1.6/1.7 from starting), and
  ``plugins."io.containerd.cri.v1.images".registry`` for 2.x in version 3 and later. 2.x
  migrates each file of an older version (``ConfigVersion`` is 3 in 2.0-2.2, 4 since 2.3):
  ``cri`` is renamed only in version 1, ``io.containerd.grpc.v1.cri``'s registry is moved to
  the images plugin — replacing the images plugin's own registry table of the same file — so
  2.0-2.2 ignore it in a version 3 config and 2.3 in version 4.
* ``config_path`` beside ``mirrors`` (and, in 1.6/1.7, beside ``configs."H".tls``): the CRI
  plugin does not load; containerd itself runs. 2.x has no ``configs."H".tls`` at all.
* Legacy mirror endpoints: a missing scheme becomes https (http for a loopback host); a URL
  path is the registry API root as written (``/v2`` is added only to an empty path).
* Relative ``imports`` globs: before 1.6.29 / 1.7.16, matched against the working directory.

Some 550 lines, on purpose: each rule above is a check here beside the facts it rests on; split
by rule, the checks would share the merged view and the line locator from another file.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
import urllib.parse
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pyctl.errors import ConfigError
from pyctl.registry.credentials.keys import auth_key
from pyctl.registry.hosts.certsd import host_dir_candidates
from pyctl.registry.hosts.containerd_config import (
    CRI_IMAGES_PLUGIN,
    CRI_PLUGINS,
    CRI_V1_PLUGIN,
    CRI_V2_PLUGIN,
    ContainerdConfig,
    Rules,
    load_containerd_config,
    resolve_imports,
    toml_key,
)
from pyctl.registry.hosts.cri import cri_registry_config
from pyctl.registry.hosts.golang import is_localhost
from pyctl.registry.hosts.model import (
    DEFAULT_HOSTS_DIRS,
    DOCKER_HUB,
    DOCKER_HUB_REGISTRY,
    HOSTS_FILE,
    CriRegistryConfig,
)
from pyctl.registry.lint.certs import check_ca, check_client
from pyctl.registry.lint.findings import Report
from pyctl.registry.lint.tomllines import TomlLines

# The CRI registry section (``Registry`` of the CRI config): nested keys, "*" for any name,
# None for a value whose inside is not checked.
_AUTH: dict[str, Any] = dict.fromkeys(("username", "password", "auth", "identitytoken"))
_TLS: dict[str, Any] = dict.fromkeys(("insecure_skip_verify", "ca_file", "cert_file", "key_file"))
_REGISTRY_1: dict[str, Any] = {
    "config_path": None,
    "mirrors": {"*": {"endpoint": None}},
    "configs": {"*": {"auth": _AUTH, "tls": _TLS}},
    "auths": {"*": _AUTH},
    "headers": None,
}
_REGISTRY_2: dict[str, Any] = {**_REGISTRY_1, "configs": {"*": {"auth": _AUTH}}}  # no tls

_IGNORED = 'containerd 1.6/1.7 ignore it without a word, 2.x logs "Ignoring unknown key in TOML'


def table_name(plugin: str) -> str:
    return f"plugins.{toml_key(plugin)}.registry"


_TABLE_PATHS = {table_name(p): ("plugins", p, "registry") for p in CRI_PLUGINS}


def expected_table(rules: Rules, version: int) -> str:
    """Where the registry section of a config of ``version`` goes for these rules."""
    if rules is Rules.CONTAINERD_1:
        return table_name(CRI_V1_PLUGIN if version <= 1 else CRI_V2_PLUGIN)
    return table_name(CRI_IMAGES_PLUGIN if version >= 3 else CRI_V2_PLUGIN)


def _why_1(plugin: str, version: int) -> str:
    """Why containerd 1.6/1.7 do not read ``plugins.<plugin>.registry`` ("" when they do)."""
    if plugin == CRI_IMAGES_PLUGIN:
        return "containerd 1.6/1.7 have no plugin io.containerd.cri.v1.images and ignore it"
    if version <= 1 and plugin != CRI_V1_PLUGIN:
        return (
            "containerd 1.6/1.7 look plugins up by their short name (plugins.cri) in a version 1 "
            "config and ignore it without a word"
        )
    if version >= 2 and plugin == CRI_V1_PLUGIN:
        return (
            "containerd 1.6/1.7 do not start with it (a version 2 config names plugins in full: "
            '"invalid plugin key URI \\"cri\\" expect io.containerd.x.vx")'
        )
    return ""


def _why_2(plugin: str, version: int) -> str:
    """Why containerd 2.x does not read it ("" when it does, migrating it if need be)."""
    if plugin == CRI_IMAGES_PLUGIN or version <= 1:
        return ""  # a version 1 config is migrated: cri renamed, the registry moved
    if plugin == CRI_V1_PLUGIN:
        return (
            "containerd 2.x renames plugins.cri only in a version 1 config and ignores it in a "
            f"version {version} one"
        )
    if version == 2:
        return ""
    logs = (
        '(they log "Ignoring unknown key in TOML for plugin" io.containerd.grpc.v1.cri: registry)'
    )
    if version == 3:
        return (
            f"containerd 2.0, 2.1 and 2.2 ignore it {logs}; only 2.3 and later move it to "
            "io.containerd.cri.v1.images when they migrate a version 3 config"
        )
    return f"containerd 2.3 and later ignore it in a version {version} config {logs}"


@dataclass
class ConfigFile:
    """One file of containerd's config as the lint read it (its text gives line numbers)."""

    path: str
    imported_by: str
    doc: dict[str, Any]
    lines: TomlLines
    version: int


class ContainerdLint:
    """Reads containerd's config and its imports (:meth:`read`), then lints each file and the
    merged registry section (:meth:`lint`)."""

    def __init__(self, r: Report) -> None:
        self.r = r
        self.files: dict[str, ConfigFile] = {}
        self.config = ContainerdConfig()
        self.cri = CriRegistryConfig()
        self.main = ""

    @property
    def rules(self) -> Rules:
        if self.config.rules is not None:
            return self.config.rules
        for f in self.files.values():  # what containerd_config would choose, had it loaded
            plugins = f.doc.get("plugins")
            if f.version >= 3 or (isinstance(plugins, dict) and CRI_IMAGES_PLUGIN in plugins):
                return Rules.CONTAINERD_2
        return Rules.CONTAINERD_1

    @property
    def version_1(self) -> int:
        """The config's version for containerd 1.6/1.7: the last one set, else 1."""
        version = 1
        for f in self.files.values():
            version = f.version or version
        return version

    def version_of(self, f: ConfigFile) -> int:
        return self.version_1 if self.rules is Rules.CONTAINERD_1 else (f.version or 1)

    # --- reading ---------------------------------------------------------------------------

    def read(self, path: str, named: bool, loaded: tuple[ContainerdConfig, Any] | None) -> None:
        """Read every file (a file containerd would not start with is a finding), then the
        merged view: ``loaded`` when the caller has it, else :func:`load_containerd_config`."""
        self.main = path
        if not path:
            return
        before = self.r.failures()
        self._read_files(path, named)
        if loaded is not None:
            self.config, self.cri = loaded
            return
        try:
            self.config = load_containerd_config(path, required=named)
            self.cri = cri_registry_config(self.config)
        except ConfigError as exc:
            if self.r.failures() == before:
                self.r.fail(path, None, str(exc), "fix what the message names")

    def _read_files(self, main: str, named: bool) -> None:
        """containerd's LoadConfig: the main file, then its imports breadth first, each once."""
        pending: deque[tuple[str, str]] = deque([(main, "")])
        seen: set[str] = set()
        root_version = 0
        while pending:
            path, parent = pending.popleft()
            if path in seen:
                continue
            seen.add(path)
            f = self._read_file(path, parent, named)
            if f is None:
                continue
            self.files[path] = f
            if root_version == 0:
                root_version = f.version
            elif f.version > root_version:
                text = (
                    f"version {f.version} is higher than version {root_version} of {main}: "
                    f'containerd 2.x does not start ("drop-in config version {f.version} '
                    f'higher than root config version {root_version}")'
                )
                self.r.fail(path, f.lines.line("version"), text, "write every file for one version")
            pending.extend((p, path) for p in self._imports(f))

    def _read_file(self, path: str, parent: str, named: bool) -> ConfigFile | None:
        r = self.r
        importer = self.files.get(parent)
        import_line = importer.lines.line("imports") if importer else None
        try:
            with open(path, "rb") as fh:
                text = fh.read().decode("utf-8")
        except FileNotFoundError:
            if parent:
                text = f"imports {path}, which does not exist: containerd does not start"
                r.fail(parent, import_line, text, f"create {path} or remove it from imports")
            elif named:
                text = "no such file (named by --containerd-config or containerd_config)"
                r.fail(path, None, text, "name containerd's config file, or leave the setting out")
            else:
                r.ok(path, None, "no containerd config here: containerd's defaults apply")
            return None
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else f"not UTF-8 text ({exc.reason})"
            fix = "make it a readable UTF-8 file" + (
                f" or remove it from {parent}" if parent else ""
            )
            r.fail(path, None, f"cannot be read: {why}: containerd does not start", fix)
            return None
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            message = f"invalid TOML: {exc}: containerd does not start"
            r.fail(path, error_line(exc), message, "fix the TOML syntax")
            return None
        lines = TomlLines(text)
        version = doc.get("version", 0)
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            text = f"version = {json.dumps(version)} is not a config version: containerd stops"
            r.fail(
                path, lines.line("version"), text, "write version = 2 (1.x) or version = 3 (2.x)"
            )
            version = 0
        if parent:
            r.ok(
                path, None, f"containerd config imported by {parent}, version {version or 'unset'}"
            )
        else:
            r.ok(path, None, f"containerd config, version {version or 1}")
        return ConfigFile(path, parent, doc, lines, version)

    def _imports(self, f: ConfigFile) -> list[str]:
        entries = f.doc.get("imports", [])
        line = f.lines.line("imports")
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            text = "imports is not a list of paths: containerd does not start"
            self.r.fail(f.path, line, text, 'write imports = ["/etc/containerd/conf.d/*.toml"]')
            return []
        for entry in entries:
            if "*" in entry and not entry.startswith("/"):
                text = (
                    f"imports {entry!r}, a relative glob: containerd before 1.6.29 and 1.7.16 "
                    "(Debian 12 ships 1.6.20) matches it against its working directory (/ under "
                    "systemd), not this file's directory, and imports nothing"
                )
                pattern = os.path.join(os.path.dirname(f.path), entry)
                self.r.warn(f.path, line, text, f"write the absolute pattern {pattern!r}")
        try:
            return resolve_imports(f.path, entries, where=f.path)
        except ConfigError as exc:
            self.r.fail(f.path, line, str(exc), "fix the pattern")
            return []

    def origin_line(self, *key: str) -> tuple[str, int | None]:
        """The file that set ``key`` of the merged registry section, and its line there."""
        origin = self.config.origin(*key)
        if origin is None:
            return self.config.path or self.main, None
        f = self.files.get(origin.file)
        table = _TABLE_PATHS.get(origin.table)
        if f is None or table is None:
            return origin.file, None
        return origin.file, f.lines.line(*table, *key)

    # --- each file -------------------------------------------------------------------------

    def lint(self) -> None:
        for f in self.files.values():
            self._file(f)
        self._merged()

    def _file(self, f: ConfigFile) -> None:
        version = self.version_of(f)
        for key, value in f.doc.items():
            if key != "plugins" and isinstance(value, dict) and _mentions_cri(value):
                self._stray_table(f, key, version)
        plugins = f.doc.get("plugins")
        if not isinstance(plugins, dict):
            return
        for name in plugins:
            if name not in CRI_PLUGINS and _is_cri_path(name):
                text = (
                    f"[plugins.{toml_key(name)}]: no containerd plugin has that name (the "
                    "quotes close after the plugin's name), so containerd ignores the table"
                )
                fix = f"write it as [{expected_table(self.rules, version)}…]"
                self.r.fail(f.path, f.lines.line("plugins", name), text, fix)
        present = [
            p
            for p in CRI_PLUGINS
            if isinstance(plugins.get(p), dict) and isinstance(plugins[p].get("registry"), dict)
        ]
        schema = _REGISTRY_1 if self.rules is Rules.CONTAINERD_1 else _REGISTRY_2
        for plugin in present:
            if self._location(f, plugin, version):
                at = ("plugins", plugin, "registry")
                self._known_keys(f, at, plugins[plugin]["registry"], schema)
        both = CRI_V2_PLUGIN in present and CRI_IMAGES_PLUGIN in present
        if both and self.rules is Rules.CONTAINERD_2 and f.version <= 3:
            old, new = table_name(CRI_V2_PLUGIN), table_name(CRI_IMAGES_PLUGIN)
            text = (
                f"this file has both [{old}] and [{new}]: containerd 2.x moves the first over the "
                f"second when it migrates a version {f.version or 1} config, replacing it whole"
            )
            line = f.lines.line("plugins", CRI_IMAGES_PLUGIN, "registry")
            self.r.warn(f.path, line, text, f"keep one: move the settings into [{new}]")

    def _stray_table(self, f: ConfigFile, key: str, version: int) -> None:
        """A top-level table other than ``plugins`` holding CRI plugin or registry tables."""
        text = (
            f"{_header(f.lines, key)}: containerd has no top-level {key!r} table (plugin "
            f'settings live under "plugins"): {_IGNORED}" and ignores it; none of its registry '
            "settings apply"
        )
        fix = (
            f"write [plugins.…] for [{toml_key(key)}.…] in every table header (the registry of "
            f"this config is [{expected_table(self.rules, version)}])"
        )
        self.r.fail(f.path, f.lines.line(key), text, fix)

    def _location(self, f: ConfigFile, plugin: str, version: int) -> bool:
        """Whether the containerd generation of the rules reads this file's registry table of
        ``plugin``; a finding (with what the other generation does) when it does not."""
        if self.rules is Rules.CONTAINERD_1:
            why = _why_1(plugin, version)
            other = _why_2(plugin, f.version or 1) or "containerd 2.x reads it"
        else:
            why = _why_2(plugin, version)
            other = _why_1(plugin, 2) if f.version == 2 and plugin == CRI_V1_PLUGIN else ""
        if not why:
            return True
        text = f"[{table_name(plugin)}] in a version {version} config: {why}"
        fix = f"write it as [{expected_table(self.rules, version)}]"
        if self.rules is Rules.CONTAINERD_1 and version <= 1:
            fix += f", or start {self.main} with version = 2"
        line = f.lines.line("plugins", plugin, "registry")
        self.r.fail(f.path, line, text + (f"; {other}" if other else ""), fix)
        return False

    def _known_keys(
        self,
        f: ConfigFile,
        at: tuple[str, ...],
        table: Mapping[str, Any],
        schema: Mapping[str, Any],
    ) -> None:
        for key, value in table.items():
            path = (*at, key)
            if key in schema:
                sub = schema[key]
            elif "*" in schema:
                if not self._relevant(at[-1], key):
                    continue
                sub = schema["*"]
            else:
                self._unknown_key(f, path, [k for k in schema if k != "*"])
                continue
            if isinstance(sub, dict) and isinstance(value, dict):
                self._known_keys(f, path, value, sub)

    def _relevant(self, kind: str, name: str) -> bool:
        """Whether ``mirrors."NAME"`` / ``configs."NAME"`` / ``auths."NAME"`` can apply."""
        if kind == "mirrors":
            return name in (self.r.host, "*")
        return (auth_key(name) if "://" in name else name) in self.r.endpoint_hosts

    def _unknown_key(self, f: ConfigFile, path: tuple[str, ...], known: list[str]) -> None:
        spelled = ".".join(toml_key(p) for p in path)
        line = f.lines.line(*path)
        key = path[-1]
        if key == "tls" and path[-3] == "configs" and self.rules is Rules.CONTAINERD_2:
            text = (
                f'{spelled}: containerd 2.x has no registry.configs."HOST".tls (removed in '
                f'2.0): it logs "Ignoring unknown key in TOML for plugin" and {path[-2]} gets '
                "no CA, client certificate or skip_verify from it"
            )
            target = self.hosts_toml_for(path[-2])
            self.r.fail(f.path, line, text, f"put them in {target} (ca = …, client = …)")
            return
        text = (
            f"{spelled}: containerd does not know {key!r} here (it knows {', '.join(known)}): "
            f'{_IGNORED} for plugin" and ignores it'
        )
        close = difflib.get_close_matches(key, known, n=1)
        self.r.fail(f.path, line, text, f"rename it to {close[0]!r}" if close else "remove it")

    def hosts_toml_for(self, host: str) -> str:
        root = self.r.dirs[0] if self.r.dirs else DEFAULT_HOSTS_DIRS[0]
        return os.path.join(host_dir_candidates(root, host)[-2], HOSTS_FILE)

    # --- the merged registry section -------------------------------------------------------

    def _merged(self) -> None:
        cri, host = self.cri, self.r.host
        if cri.config_path:
            self._beside_config_path()
            return
        key = host if host in cri.mirrors else "*"
        for endpoint in cri.mirrors.get(key, ()):
            self._endpoint(key, endpoint)
        for kind, names, targets in (
            ("mirrors", cri.mirrors, {host}),
            ("configs", cri.configs, self.r.endpoint_hosts),
        ):
            for name in names:
                if "://" in name and auth_key(name) in targets:
                    by = "the image's registry host" if kind == "mirrors" else "the endpoint's host"
                    text = (
                        f'registry.{kind}."{name}": containerd looks {kind} up by {by} '
                        f"({auth_key(name)}), never by a URL: this table never applies"
                    )
                    fix = f'name the table registry.{kind}."{auth_key(name)}"'
                    self.r.fail(*self.origin_line(kind, name), text, fix)
        if self.rules is Rules.CONTAINERD_1:
            self._legacy_tls()

    def _beside_config_path(self) -> None:
        cri = self.cri
        where = ", ".join(cri.config_path_from) or self.config.path
        beside = f"is set beside config_path = {cri.config_path!r} (from {where})"
        runs = "containerd runs, but the kubelet can pull and run nothing"
        for host in list(cri.mirrors)[:1]:  # one stops the plugin
            root = cri.config_paths[0] if cri.config_paths else DEFAULT_HOSTS_DIRS[0]
            target = os.path.join(host_dir_candidates(root, host)[-2], HOSTS_FILE)
            text = (
                f'registry.mirrors."{host}" {beside}: containerd\'s CRI plugin does not load '
                '("`mirrors` cannot be set when `config_path` is provided"; 1.6, 1.7 and 2.x '
                f"alike): {runs} (pyctl follows config_path)"
            )
            fix = (
                f'delete the mirrors tables and write {target} with a [host."ENDPOINT"] table '
                'per mirror (capabilities = ["pull", "resolve"])'
            )
            self.r.fail(*self.origin_line("mirrors", host), text, fix)
        if self.rules is not Rules.CONTAINERD_1:
            return  # 2.x has no configs.tls: reported with the file's keys
        for host in [h for h, c in cri.configs.items() if c.has_tls][:1]:
            text = (
                f'registry.configs."{host}".tls {beside}: containerd 1.6/1.7\'s CRI plugin does '
                'not load ("`configs.tls` cannot be set when `config_path` is provided"): ' + runs
            )
            fix = f"delete the tls table and put its files in {self.hosts_toml_for(host)}"
            self.r.fail(*self.origin_line("configs", host, "tls"), text, fix)

    def _endpoint(self, key: str, endpoint: str) -> None:
        """A legacy mirror endpoint as containerd's CRI plugin uses it (``registryEndpoints``)."""
        file, line = self.origin_line("mirrors", key, "endpoint")
        url = endpoint
        if "://" not in url:
            url = ("http://" if is_localhost(url.split("/", 1)[0]) else "https://") + endpoint
        where = f'registry.mirrors."{key}" endpoint {endpoint!r}'
        try:
            parts = urllib.parse.urlsplit(url)
            parts.port  # noqa: B018  (validates the port)
            bad = "" if parts.scheme in ("http", "https") and parts.hostname else "no http(s) host"
        except ValueError as exc:
            bad = str(exc)
        if bad:
            text = f"{where}: containerd cannot use it ({bad}); pulls of {self.r.host} fail"
            self.r.fail(file, line, text, 'write it as "https://HOST[:PORT]"')
            return
        host = self.r.host
        upstream = DOCKER_HUB_REGISTRY if host == DOCKER_HUB else host
        schemeless = "" if "://" in endpoint else f"has no scheme (containerd makes it {url}) and "
        root = f"{parts.scheme}://{parts.netloc}"
        if parts.path and not parts.path.startswith("/v2"):
            text = (
                f"{where} {schemeless}has the path {parts.path!r}, which containerd uses as the "
                f"registry API root as written (no /v2 added): requests go to "
                f"{root}{parts.path.rstrip('/')}/<name>/manifests/<tag>, where no registry "
                f"answers, and every pull falls through to {upstream}"
            )
            inner = parts.path.strip("/")
            fix = f'write "{root}/v2/{inner}"' if inner else f'write "{root}" (no trailing /)'
            self.r.fail(file, line, text, fix)
        elif schemeless:
            text = f"{where} {schemeless}works, but a plain-HTTP mirror needs http:// written"
            self.r.warn(file, line, text, f'write "{url}"')

    def _legacy_tls(self) -> None:
        """The CA and client files of ``configs."HOST".tls`` for this registry's endpoints."""
        for host, conf in self.cri.configs.items():
            if host not in self.r.endpoint_hosts or not conf.has_tls:
                continue
            label = f'registry.configs."{host}".tls'
            if conf.ca_file:
                file, line = self.origin_line("configs", host, "tls", "ca_file")
                check_ca(self.r, conf.ca_file, file, line, f"{label}.ca_file")
            if conf.cert_file:
                file, line = self.origin_line("configs", host, "tls", "cert_file")
                check_client(
                    self.r, conf.cert_file, conf.key_file, file, line, f"{label}.cert_file"
                )


def error_line(exc: tomllib.TOMLDecodeError) -> int | None:
    """The line a TOML error is on (Python 3.14 has ``lineno``; older ones say it)."""
    line = getattr(exc, "lineno", None)
    if isinstance(line, int):
        return line
    m = re.search(r"at line (\d+)", str(exc))
    return int(m.group(1)) if m else None


def _header(lines: TomlLines, key: str) -> str:
    """The first table header below ``key`` as written (``[plugin."x".registry]``)."""
    for path, _ in lines.headers():
        if path[0] == key:
            return "[" + ".".join(toml_key(p) for p in path) + "]"
    return f"[{toml_key(key)}.…]"


def _mentions_cri(table: Mapping[str, Any], depth: int = 0) -> bool:
    """Whether a table holds a CRI plugin's table or a registry table (two levels down)."""
    for key, value in table.items():
        if key in CRI_PLUGINS or key == "registry" or _is_cri_path(key):
            return True
        if depth < 1 and isinstance(value, dict) and _mentions_cri(value, depth + 1):
            return True
    return False


def _is_cri_path(name: str) -> bool:
    """A plugin name that is a CRI plugin's name with more after it (``"….cri.registry"``)."""
    return any(name.startswith(p + ".") for p in CRI_PLUGINS if p != CRI_V1_PLUGIN)
