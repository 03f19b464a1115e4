"""containerd's own configuration, read as containerd reads it: the main file and the files its
``imports`` name, merged into one view; for pyctl, the CRI ``registry`` section of that view
and, for each of its settings, the file it came from.

Reading (containerd ``LoadConfig`` / ``resolveImports``: ``services/server/config/config.go``
in 1.6 and 1.7, ``cmd/containerd/server/config/config.go`` in 2.x):

* breadth first: the main file, then the files it imports in the order named, then the files
  those import, and so on; a path already read is not read again (cycles, repeats);
* each import is cleaned (Go ``filepath.Clean``), a relative one is taken relative to the
  directory of the file that imports it, and one containing ``*`` is a Go glob (see
  :mod:`pyctl.registry.hosts.golang`) whose matches come sorted; a glob that matches nothing imports
  nothing, any other path must exist — containerd does not start otherwise, and pyctl stops
  with an error naming the file. (containerd before 1.6.29 and 1.7.16 matched a *relative
  glob* against its working directory instead; pyctl follows the fixed rule.)

Merging differs between containerd generations (:class:`Rules`):

* **containerd 1.6 / 1.7** (``mergeConfig``: ``to.Plugins[k] = v``): a later file's table for a
  plugin replaces the earlier one whole. The configuration's version is the last ``version``
  set (1 when none) and picks the CRI plugin's key: ``cri`` (1) or
  ``io.containerd.grpc.v1.cri`` (2).
* **containerd 2.x**: each file is first migrated on its own to the newest layout
  (``MigrateConfigTo`` and the CRI images plugin's ``configMigration``: version 1 ``cri`` is
  ``io.containerd.grpc.v1.cri``; the ``registry`` of ``io.containerd.grpc.v1.cri`` moves to
  ``io.containerd.cri.v1.images``), then merged key by key (``mergo.Merge`` with
  ``WithOverride``): tables merge recursively, a later string, number or array replaces the
  earlier one. A file whose version is higher than that of the first file that sets one is an
  error (containerd 2.x does not start).

Which generation, unless the caller says: 2.x when the files need it (a version 3 or later
file, the ``io.containerd.cri.v1.images`` plugin, or a short plugin name in a version 2
configuration, which 1.6 and 1.7 refuse); otherwise 1.6/1.7 — and when 2.x would see other
registry settings in the same files, :attr:`ContainerdConfig.note` says which.

Only the CRI plugin's tables are merged here: nothing else in containerd's config concerns pyctl.
"""

from __future__ import annotations

import copy
import enum
import json
import re
import tomllib
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from pyctl.errors import ConfigError
from pyctl.registry.hosts import golang
from pyctl.registry.hosts.model import EMPTY

CRI_V1_PLUGIN = "cri"
CRI_V2_PLUGIN = "io.containerd.grpc.v1.cri"
CRI_IMAGES_PLUGIN = "io.containerd.cri.v1.images"
CRI_PLUGINS = (CRI_V1_PLUGIN, CRI_V2_PLUGIN, CRI_IMAGES_PLUGIN)

# containerd 2.3's version.ConfigVersion; files below it are migrated (2.3 runs the CRI images
# migration for version 3 files too, so a v3 file's io.containerd.grpc.v1.cri.registry moves).
NEWEST_VERSION = 4

Key = tuple[str, ...]


class Rules(enum.Enum):
    """How the files are merged: as containerd 1.6/1.7 or as containerd 2.x does."""

    CONTAINERD_1 = "containerd 1.6/1.7"
    CONTAINERD_2 = "containerd 2.x"

    @property
    def merge(self) -> str:
        if self is Rules.CONTAINERD_1:
            return "a later file's plugin table replaces the earlier one whole"
        return "each file migrated to the newest layout, then plugin tables merged key by key"


class ConfigFile(NamedTuple):
    """One file read: its path as containerd resolves it, who imported it, its ``version``."""

    path: str
    imported_by: str = ""  # "" for the main file
    version: int = 0  # as written; 0 when the file has no ``version``

    def __str__(self) -> str:
        return _where(self.path, self.imported_by)


class Origin(NamedTuple):
    """Where a registry setting was written: the file and its registry table as spelled there."""

    file: str
    table: str  # e.g. plugins."io.containerd.grpc.v1.cri".registry


class Setting(NamedTuple):
    """One value of the merged registry section: its key below ``registry``, value, origin."""

    key: Key
    value: object
    origin: Origin

    @property
    def secret(self) -> bool:
        return is_secret(self.key)

    @property
    def dotted(self) -> str:
        return dotted_key(self.key)


class ContainerdConfig(NamedTuple):
    """The merged view of containerd's configuration, as far as registries are concerned."""

    path: str = ""  # the main file ("" when there is none)
    files: tuple[ConfigFile, ...] = ()  # every file read, in merge order (main file first)
    rules: Rules | None = None
    reason: str = ""  # why these rules
    registry: Mapping[str, Any] = EMPTY
    origins: Mapping[Key, Origin] = EMPTY
    note: str = ""  # what the other containerd generation would read differently

    @property
    def imports(self) -> tuple[ConfigFile, ...]:
        return self.files[1:]

    def settings(self) -> list[Setting]:
        """Every value of the registry section (tables flattened), in file order."""
        return [Setting(k, v, self.origins[k]) for k, v in _leaves(self.registry)]

    def origin(self, *key: str) -> Origin | None:
        """The origin of the value at ``key``, or of the first one below it."""
        for k, origin in self.origins.items():
            if k[: len(key)] == key:
                return origin
        return None

    def files_of(self, *key: str) -> tuple[str, ...]:
        """The files that set the value at ``key`` or anything below it, in merge order."""
        found = {o.file for k, o in self.origins.items() if k[: len(key)] == key}
        return tuple(f.path for f in self.files if f.path in found)


def load_containerd_config(
    path: str, *, required: bool = False, rules: Rules | None = None
) -> ContainerdConfig:
    """Read containerd's configuration at ``path`` with everything it imports.

    A missing main file is an empty configuration unless ``required`` (the operator named
    it). A missing import (not a glob), an unreadable file, invalid TOML, a malformed glob, or
    a value of the wrong type where pyctl reads is a :class:`ConfigError` naming the file (and
    the file importing it). ``rules`` forces one containerd generation's merge rules.
    """
    if not path:
        return ContainerdConfig()
    files = _read_all(path, required)
    if not files:
        return ContainerdConfig()
    if rules is None:
        chosen, reason = _choose_rules(files)
    else:
        chosen, reason = rules, "as asked"
    registry, origins = _MERGE[chosen](files)
    note = _note(files, registry) if rules is None and chosen is Rules.CONTAINERD_1 else ""
    return ContainerdConfig(
        path=path,
        files=tuple(f.info for f in files),
        rules=chosen,
        reason=reason,
        registry=registry,
        origins=origins,
        note=note,
    )


def resolve_imports(parent: str, imports: Sequence[str], *, where: str = "") -> list[str]:
    """containerd ``resolveImports``: the paths ``parent``'s ``imports`` name, in order."""
    out: list[str] = []
    for entry in imports:
        path = golang.clean(entry)
        if not path.startswith("/"):
            path = golang.join(golang.dirname(parent), path)
        if "*" not in path:
            out.append(path)
            continue
        try:
            out.extend(golang.glob(path))
        except golang.BadPattern:
            raise ConfigError(
                f"{where or _where(parent, '')}: import {entry!r} is not a valid glob pattern "
                "(Go syntax: * ? [a-z] [^a-z] and \\ to escape; containerd does not start "
                "with it either)"
            ) from None
    return out


def is_secret(key: Key) -> bool:
    """Whether a registry key holds a secret (``configs."H".auth`` / ``auths`` but ``username``)."""
    inside_auth = (len(key) == 4 and key[0] == "configs" and key[2] == "auth") or (
        len(key) == 3 and key[0] == "auths"
    )
    return inside_auth and key[-1] != "username"


def dotted_key(key: Key) -> str:
    return ".".join(toml_key(k) for k in key)


def toml_key(name: str) -> str:
    """``name`` as a TOML key: bare when it can be, else quoted."""
    if re.fullmatch(r"[A-Za-z0-9_-]+", name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_value(value: object) -> str:
    """A value as TOML-ish text for a message (strings quoted, arrays in brackets)."""
    return json.dumps(value, default=str)


# --------------------------------------------------------------------------------------------
# Reading the files


class _File(NamedTuple):
    info: ConfigFile
    plugins: dict[str, Any]  # the file's whole ``plugins`` table; CRI entries are tables


def _where(path: str, imported_by: str) -> str:
    return f"containerd config {path}" + (f" (imported by {imported_by})" if imported_by else "")


def _fix(imported_by: str) -> str:
    if imported_by:
        return f"fix it or remove it from the imports of {imported_by}"
    return "fix it"


def _read_all(main: str, required: bool) -> list[_File]:
    files: list[_File] = []
    seen: set[str] = set()
    pending: deque[tuple[str, str]] = deque([(main, "")])
    while pending:
        path, imported_by = pending.popleft()
        if path in seen:
            continue
        doc = _read(path, imported_by, required)
        if doc is None:
            return []
        info = ConfigFile(path, imported_by, _version(doc, path, imported_by))
        files.append(_File(info, _plugins(doc, str(info))))
        seen.add(path)
        imports = resolve_imports(path, _imports(doc, str(info)), where=str(info))
        pending.extend((p, path) for p in imports)
    return files


def _read(path: str, imported_by: str, required: bool) -> dict[str, Any] | None:
    where = _where(path, imported_by)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        if imported_by:
            raise ConfigError(
                f"{where}: no such file (create it or remove it from the imports of "
                f"{imported_by}; containerd does not start without it either)"
            ) from None
        if required:
            raise ConfigError(
                f"{where}: no such file (check --containerd-config or the containerd_config "
                "setting)"
            ) from None
        return None
    except OSError as exc:
        fix = (
            f"make it a readable file or remove it from the imports of {imported_by}"
            if imported_by
            else "check the file, or --containerd-config and the containerd_config setting"
        )
        raise ConfigError(f"{where}: cannot read it: {exc.strerror or exc} ({fix})") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: not UTF-8 text: {exc} ({_fix(imported_by)})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{where}: invalid TOML: {exc} ({_fix(imported_by)}; containerd does not "
            "start with it either)"
        ) from None


def _version(doc: dict[str, Any], path: str, imported_by: str) -> int:
    version = doc.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ConfigError(f"{_where(path, imported_by)}: version must be a number such as 2 or 3")
    return version


def _imports(doc: dict[str, Any], where: str) -> list[str]:
    imports = doc.get("imports", [])
    if not isinstance(imports, list) or not all(isinstance(i, str) for i in imports):
        raise ConfigError(f"{where}: imports must be a list of paths (strings)")
    return imports


def _plugins(doc: dict[str, Any], where: str) -> dict[str, Any]:
    plugins = doc.get("plugins", {})
    if not isinstance(plugins, dict):
        raise ConfigError(f"{where}: plugins must be a table")
    for name in CRI_PLUGINS:
        table = plugins.get(name)
        if table is None:
            continue
        spelled = f"plugins.{toml_key(name)}"
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: {spelled} must be a table")
        if not isinstance(table.get("registry", {}), dict):
            raise ConfigError(f"{where}: {spelled}.registry must be a table")
    return plugins


# --------------------------------------------------------------------------------------------
# Choosing and applying the merge rules


def _choose_rules(files: Sequence[_File]) -> tuple[Rules, str]:
    for f in files:
        if f.info.version >= 3:
            return Rules.CONTAINERD_2, (
                f"{f.info.path} is a version {f.info.version} file, which only containerd 2.x reads"
            )
    for f in files:
        if CRI_IMAGES_PLUGIN in f.plugins:
            return Rules.CONTAINERD_2, (
                f"{f.info.path} configures {CRI_IMAGES_PLUGIN}, a plugin only containerd 2.x has"
            )
    if _merged_version(files) >= 2:
        for f in files:
            for name in f.plugins:
                if name.count(".") < 3:
                    return Rules.CONTAINERD_2, (
                        f"{f.info.path} names plugin {name!r} by its short name in a version 2 "
                        "configuration: containerd 1.6/1.7 do not start with that, 2.x "
                        "migrates the file"
                    )
    return Rules.CONTAINERD_1, "no file needs containerd 2.x (version 1 and 2 files only)"


def _merged_version(files: Sequence[_File]) -> int:
    """containerd 1.6/1.7: the last ``version`` set wins; 1 when no file sets one."""
    version = 1
    for f in files:
        version = f.info.version or version
    return version


_Merged = tuple[dict[str, Any], dict[Key, Origin]]


def _merge_containerd_1(files: Sequence[_File]) -> _Merged:
    plugins: dict[str, Any] = {}
    origins: dict[Key, Origin] = {}
    for f in files:
        for name in CRI_PLUGINS:
            if name in f.plugins:
                table = f.plugins[name]
                _forget(origins, (name,))
                plugins[name] = copy.deepcopy(table)
                _mark(origins, (name,), table, _origin(f, name))
    cri = CRI_V1_PLUGIN if _merged_version(files) < 2 else CRI_V2_PLUGIN
    return _registry_section(plugins, origins, cri)


def _merge_containerd_2(files: Sequence[_File]) -> _Merged:
    plugins: dict[str, Any] = {}
    origins: dict[Key, Origin] = {}
    root: ConfigFile | None = None
    for f in files:
        if root is None and f.info.version:
            root = f.info
        elif root is not None and f.info.version > root.version:
            raise ConfigError(
                f"{f.info}: version {f.info.version} is higher than version {root.version} of "
                f"{root.path}, and containerd 2.x does not start with a drop-in of a higher "
                f"version than the root config (write both for the same version)"
            )
        migrated, spelled = _migrate(f)
        _deep_merge(plugins, migrated, (), origins, _origin(f, spelled))
    return _registry_section(plugins, origins, CRI_IMAGES_PLUGIN)


_MERGE = {Rules.CONTAINERD_1: _merge_containerd_1, Rules.CONTAINERD_2: _merge_containerd_2}


def _migrate(f: _File) -> tuple[dict[str, Any], str]:
    """One file's CRI tables in the newest layout, and the plugin its registry was written in."""
    tables = {name: f.plugins[name] for name in CRI_PLUGINS if name in f.plugins}
    cri_spelled = CRI_V2_PLUGIN
    legacy = tables.pop(CRI_V1_PLUGIN, None)
    if f.info.version < 2 and legacy is not None:  # v1Migrate: "cri" is the CRI plugin
        tables[CRI_V2_PLUGIN] = legacy
        cri_spelled = CRI_V1_PLUGIN
    spelled = CRI_IMAGES_PLUGIN
    cri = tables.get(CRI_V2_PLUGIN)
    if f.info.version < NEWEST_VERSION and cri is not None:
        cri = dict(cri)
        images = dict(tables.get(CRI_IMAGES_PLUGIN, {}))
        if "registry" in cri:
            images["registry"] = cri.pop("registry")
            spelled = cri_spelled
        tables[CRI_V2_PLUGIN] = cri
        tables[CRI_IMAGES_PLUGIN] = images
    return tables, spelled


def _origin(f: _File, plugin: str) -> Origin:
    return Origin(f.info.path, f"plugins.{toml_key(plugin)}.registry")


def _registry_section(plugins: dict[str, Any], origins: dict[Key, Origin], name: str) -> _Merged:
    registry = plugins.get(name, {}).get("registry", {})
    prefix = (name, "registry")
    below = {k[2:]: o for k, o in origins.items() if k[:2] == prefix and len(k) > 2}
    return registry, below


def _deep_merge(
    dst: dict[str, Any], src: Mapping[str, Any], at: Key, origins: dict[Key, Origin], o: Origin
) -> None:
    """mergo ``WithOverride`` on ``map[string]any``: tables merge, other values replace."""
    for name, value in src.items():
        key = (*at, name)
        current = dst.get(name)
        if isinstance(value, dict) and isinstance(current, dict):
            _deep_merge(current, value, key, origins, o)
        else:
            _forget(origins, key)
            dst[name] = copy.deepcopy(value)
            _mark(origins, key, value, o)


def _forget(origins: dict[Key, Origin], key: Key) -> None:
    for k in [k for k in origins if k[: len(key)] == key]:
        del origins[k]


def _mark(origins: dict[Key, Origin], key: Key, value: object, o: Origin) -> None:
    if isinstance(value, dict) and value:
        for name, inner in value.items():
            _mark(origins, (*key, name), inner, o)
    else:
        origins[key] = o


def _leaves(table: Mapping[str, Any], at: Key = ()) -> Iterator[tuple[Key, object]]:
    for name, value in table.items():
        if isinstance(value, dict):
            yield from _leaves(value, (*at, name))
        else:
            yield (*at, name), value


def _note(files: Sequence[_File], registry: Mapping[str, Any]) -> str:
    """What containerd 2.x would read differently from files read with 1.6/1.7's rules."""
    try:
        other, origins = _merge_containerd_2(files)
    except ConfigError as exc:
        return f"containerd 2.x would not start with these files: {exc}"
    mine, theirs = dict(_leaves(registry)), dict(_leaves(other))
    if mine == theirs:
        return ""
    changes: list[str] = []
    for key in dict.fromkeys([*mine, *theirs]):
        if mine.get(key, _UNSET) == theirs.get(key, _UNSET):
            continue
        if key not in theirs:
            changes.append(f"no {dotted_key(key)}")
            continue
        value = "(secret)" if is_secret(key) else render_value(theirs[key])
        changes.append(f"{dotted_key(key)} = {value} from {origins[key].file}")
    return (
        "containerd 2.x merges plugin tables key by key and would read other registry "
        "settings from these files: " + "; ".join(changes)
    )


_UNSET = object()
