"""Hosts directories linted: which entry applies to the registry, the ones meant for it that
containerd never matches, and the hosts.toml (or docker-style certificate files) that applies.

Facts from containerd's ``core/remotes/docker/config/hosts.go`` (``remotes/docker/config`` in
1.6/1.7) and the CRI plugin's ``registryHosts``:

* A host's directory is ``HOST_PORT_``, ``HOST:PORT`` or ``_default`` under each root in turn;
  no other spelling matches (no fallback from ``HOST:443`` to ``HOST``, as pyctl and nerdctl
  do, nor the other way round), and ``_default`` of an earlier root wins over a later root.
* ``hostFileConfig`` knows ``capabilities``, ``ca``, ``client``, ``skip_verify``, ``header``,
  ``override_path`` (and ``dial_timeout`` since 2.1); the top level adds ``server`` and the
  ``host`` tables. Unknown keys are ignored. An unknown capability (``referrers`` is known
  since 2.2), a value of the wrong type or invalid TOML makes containerd reject the whole file:
  it logs "failed to decode hosts.toml" and uses the ``*.crt`` / ``*.cert`` files beside it.
* ``server`` and host names get ``https://`` in front unless they start with "http", then go
  through Go's ``url.Parse``; a root entry without a host becomes the default upstream.
* containerd 2.x (and pyctl) read hosts only from ``[host."…"]`` table headers; 1.6 (all of
  it) and 1.7 before 1.7.32 reject a file without any ``host`` table ("invalid `host` tree").
* The CRI plugin reads hosts directories only through ``config_path``; 2.2 and later default
  it to ``/etc/containerd/certs.d:/etc/docker/certs.d`` when no ``mirrors`` are set.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeGuard

from pyctl.errors import ConfigError
from pyctl.registry.hosts.certsd import host_dir_candidates, lookup_host_dir
from pyctl.registry.hosts.containerd_config import Rules, toml_key
from pyctl.registry.hosts.golang import parse_go_duration, split_host_port
from pyctl.registry.hosts.hosts_toml import parse_hosts_toml
from pyctl.registry.hosts.model import DEFAULT_DIR, DEFAULT_HOSTS_DIRS, HOSTS_FILE
from pyctl.registry.hosts.provenance import dir_host, near_misses
from pyctl.registry.lint.certs import check_ca, check_client
from pyctl.registry.lint.containerd import ContainerdLint, error_line, expected_table
from pyctl.registry.lint.findings import Report
from pyctl.registry.lint.tomllines import TomlLines

_HOST_KEYS = ("capabilities", "ca", "client", "skip_verify", "header", "override_path")
_HOST_KEYS_ALL = (*_HOST_KEYS, "dial_timeout")
_TOP_KEYS = ("server", *_HOST_KEYS_ALL, "host")
_CAPABILITIES = ("pull", "resolve", "push")

# what people write for a key of hosts.toml (docker daemon.json, CRI registry.configs habits)
_ALIASES = {
    "ca_file": "ca",
    "cacert": "ca",
    "ca_cert": "ca",
    "cert": "client",
    "cert_file": "client",
    "client_cert": "client",
    "insecure_skip_verify": "skip_verify",
    "insecure": "skip_verify",
    "headers": "header",
    "capability": "capabilities",
}

_REJECTS = (
    'containerd rejects the whole file (it logs "failed to decode hosts.toml") and uses only '
    "the *.crt / *.cert files of {dir}: every mirror, server and ca in it is ignored"
)


class HostsLint:
    def __init__(self, r: Report, cd: ContainerdLint) -> None:
        self.r = r
        self.cd = cd

    def lint(self) -> None:
        r = self.r
        self._config_path_dirs()
        try:
            applied = lookup_host_dir(r.host, r.dirs)
        except ConfigError as exc:
            r.fail(r.dirs[0] if r.dirs else "", None, str(exc), "make the directory readable")
            return
        self._misnamed(applied)
        if applied is None:
            first = r.dirs[0] if r.dirs else DEFAULT_HOSTS_DIRS[0]
            text = (
                f"no hosts directory entry for {r.host} (looked in {', '.join(r.dirs)}): "
                "containerd's defaults apply"
            )
            r.ok(first, None, text)
            return
        root = os.path.dirname(applied)
        expected = host_dir_candidates(root, r.host)
        if os.path.basename(applied) not in map(os.path.basename, expected):
            text = (
                f"applies to {r.host} for pyctl and nerdctl only: containerd does not fall back "
                f"from {r.host} to {os.path.basename(applied)}/"
            )
            r.warn(applied, None, text, f"rename it to {expected[-2]}")
        self._shadowed(applied)
        self._unused_by_cri(applied)
        hosts_file = os.path.join(applied, HOSTS_FILE)
        try:
            has_toml = os.path.getsize(hosts_file) > 0
        except OSError:
            has_toml = False
        if has_toml:
            r.ok(hosts_file, None, f"applies to {r.host}")
            HostsToml(r, hosts_file, applied).lint()
        else:
            self._cert_dir(applied)

    def _config_path_dirs(self) -> None:
        if self.r.settings.hosts_dir:
            return  # --hosts-dir / hosts_dir replace config_path for pyctl
        for d in self.cd.cri.config_paths:
            if not os.path.isdir(d):
                text = (
                    f"config_path names {d}, which is not a directory: containerd finds no "
                    "hosts.toml there"
                )
                fix = f"create {d} (one directory per registry host in it) or fix config_path"
                self.r.warn(*self.cd.origin_line("config_path"), text, fix)

    def _misnamed(self, applied: str | None) -> None:
        """Directories meant for this registry that containerd never matches."""
        r = self.r
        if applied is None or os.path.basename(applied) == DEFAULT_DIR:
            for path, meant in near_misses(r.host, r.dirs):
                target = host_dir_candidates(os.path.dirname(path), r.host)[-2]
                if meant.removesuffix(":443") == r.host.removesuffix(":443"):
                    text = (
                        f"is for {meant}: containerd looks up {os.path.basename(target)}/ (then "
                        f"_default/) for {r.host} and never matches it"
                    )
                    r.fail(path, None, text, f"rename it to {target}")
                else:
                    fix = f"if it is meant for this registry, rename it to {target}"
                    r.warn(path, None, f"is for {meant}, not {r.host}", fix)
        name = split_host_port(r.host)[0]
        for root in r.dirs:
            for path in _scheme_named(root):
                rest = re.sub(r"(?i)^https?(?:%3a|[:_])[:_/]*", "", os.path.basename(path))
                target = host_dir_candidates(root, r.host)[-2]
                for entry in [path] if rest else _children(path):
                    meant = dir_host(rest or os.path.basename(entry))
                    if split_host_port(meant)[0] == name:
                        text = (
                            "is named with a URL scheme: containerd looks up "
                            f"{target}/ (host and port only) and never matches it"
                        )
                        r.fail(entry, None, text, f"rename it to {target}")

    def _shadowed(self, applied: str) -> None:
        if os.path.basename(applied) != DEFAULT_DIR:
            return
        roots = [os.path.normpath(d) for d in self.r.dirs]
        root = os.path.dirname(applied)
        later = roots[roots.index(root) + 1 :] if root in roots else []
        for other in later:
            for candidate in host_dir_candidates(other, self.r.host)[:-1]:
                if os.path.exists(candidate):
                    text = (
                        f"is never used for {self.r.host}: {applied} in an earlier hosts "
                        "directory matches first"
                    )
                    fix = f"move it to {host_dir_candidates(root, self.r.host)[-2]}"
                    self.r.warn(candidate, None, text, fix)

    def _unused_by_cri(self, applied: str) -> None:
        """A hosts.toml found in a default directory while containerd's config sets no
        config_path: containerd's CRI plugin (the kubelet's pulls) does not read it."""
        cri = self.cd.cri
        root = os.path.dirname(applied)
        if self.r.settings.hosts_dir or cri.config_path or root not in DEFAULT_HOSTS_DIRS:
            return
        config = self.cd.config.path or self.cd.main or "/etc/containerd/config.toml"
        rules = self.cd.rules
        table = expected_table(rules, self.cd.version_1 if rules is Rules.CONTAINERD_1 else 3)
        later = (
            "2.2 and later read /etc/containerd/certs.d and /etc/docker/certs.d by default"
            if not cri.mirrors
            else "2.2 and later would read them by default, but not beside registry.mirrors"
        )
        text = (
            "sets no config_path: the CRI plugin of containerd 1.6, 1.7, 2.0 and 2.1 does not "
            f"read {applied} (pyctl, nerdctl and ctr --hosts-dir do), so the kubelet's pulls "
            f"ignore it; {later}"
        )
        self.r.warn(config, None, text, f'add config_path = "{root}" to [{table}]')

    def _cert_dir(self, directory: str) -> None:
        """Docker-style files: ``*.crt`` CAs, ``*.cert`` + ``*.key`` client pairs."""
        r = self.r
        crts, certs = _files(directory, ".crt"), _files(directory, ".cert")
        keys, pems = _files(directory, ".key"), _files(directory, ".pem")
        what = "docker-style certificate files" if crts or certs else "nothing in it"
        r.ok(directory, None, f"applies to {r.host} ({what}, no hosts.toml)")
        for crt in crts:
            check_ca(r, crt, crt, None, "CA file")
        for cert in certs:
            key = cert.removesuffix(".cert") + ".key"
            check_client(r, cert, key if key in keys else "", cert, None, "client certificate")
        for key in keys:
            if key.removesuffix(".key") + ".cert" not in certs:
                text = (
                    "has no .cert beside it: containerd ignores it (docker refuses the directory)"
                )
                r.warn(
                    key, None, text, f"name the client certificate {key.removesuffix('.key')}.cert"
                )
        for pem in pems:
            text = "is not read: containerd reads *.crt (CA) and *.cert + *.key (client) here"
            fix = f"rename it to {os.path.basename(pem).removesuffix('.pem')}.crt if it is the CA"
            r.warn(pem, None, text, fix)


class HostsToml:
    """One hosts.toml, as containerd's ``parseHostsFile`` reads it."""

    def __init__(self, r: Report, path: str, directory: str) -> None:
        self.r = r
        self.path = path
        self.dir = directory
        self.rejects = _REJECTS.format(dir=directory)
        self.lines = TomlLines("")

    def lint(self) -> None:
        r, path = self.r, self.path
        try:
            with open(path, "rb") as fh:
                source = fh.read().decode("utf-8")
            doc = tomllib.loads(source)
        except OSError as exc:
            r.fail(path, None, f"cannot be read: {exc.strerror}", "make it readable by root")
            return
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            line = error_line(exc) if isinstance(exc, tomllib.TOMLDecodeError) else None
            r.fail(path, line, f"invalid TOML: {exc}; {self.rejects}", "fix the TOML syntax")
            return
        before = r.failures()
        self.lines = lines = TomlLines(source)
        for key in doc:
            if key not in _TOP_KEYS:
                self._unknown((key,), "top level", _TOP_KEYS)
        hosts = doc.get("host", {})
        if not isinstance(hosts, dict):
            text = f'host is not a table of [host."URL"] tables; {self.rejects}'
            r.fail(path, lines.line("host"), text, 'write each mirror as [host."https://HOST"]')
            hosts = {}
        ordered = list(dict.fromkeys(p[1] for p, _ in lines.headers() if p[0] == "host" and p[1:]))
        for name in hosts:
            if name not in ordered and len(name) > 0:
                text = (
                    f"host {name!r} is not written as a [host.{toml_key(name)}] table: containerd "
                    "2.x (and pyctl) read only hosts named by table headers and ignore it "
                    "(1.6/1.7 read it)"
                )
                fix = f"write it as [host.{toml_key(name)}] with its keys below"
                r.fail(path, lines.line("host", name), text, fix)
        if "host" not in doc:
            text = (
                'has no [host."…"] table: containerd 1.6 (all releases; Debian 12 ships 1.6.20) '
                'and 1.7 before 1.7.32 reject it ("invalid `host` tree") and use only the '
                f"*.crt / *.cert files of {self.dir}, so its server and ca are ignored there"
            )
            r.warn(path, None, text, self._host_table_fix(doc))
        if "server" in doc:
            self._url(lines.line("server"), f"server = {json.dumps(doc['server'])}", doc["server"])
        self._entry((), doc, "")
        for name in ordered:
            conf = hosts.get(name)
            if isinstance(conf, dict):
                label = f"[host.{toml_key(name)}]"
                self._url(lines.line("host", name), label, name)
                self._entry(("host", name), conf, label + " ")
        self._crt_beside(doc)
        if r.failures() == before:
            try:
                parse_hosts_toml(source, base_dir=self.dir, source=path)
            except ConfigError as exc:
                r.fail(path, None, f"pyctl cannot use it: {exc}", "fix what the message names")

    def _host_table_fix(self, doc: Mapping[str, Any]) -> str:
        server = doc.get("server")
        url = server if isinstance(server, str) and server else f"https://{self.r.host}"
        url = url if "://" in url else "https://" + url
        moved = [k for k in ("ca", "client", "skip_verify", "header") if k in doc]
        text = f'add [host.{toml_key(url)}] with capabilities = ["pull", "resolve", "push"]'
        return text + (f" and the {', '.join(moved)} of the top level" if moved else "")

    def _unknown(self, key: tuple[str, ...], label: str, known: Sequence[str]) -> None:
        line = self.lines.line(*key)
        if key[-1] == "server" and key[0] == "host":
            text = (
                f"{label}: server is a top-level key; containerd ignores it in a [host] table "
                "(the table's name is the host's URL)"
            )
            self.r.fail(self.path, line, text, "remove it here, or move it to the top level")
            return
        text = (
            f"{label}: containerd does not know the key {key[-1]!r} and ignores it (it knows "
            f"{', '.join(known)})"
        )
        likely = _ALIASES.get(key[-1]) or next(
            iter(difflib.get_close_matches(key[-1], known, 1)), ""
        )
        self.r.fail(self.path, line, text, f"rename it to {likely!r}" if likely else "remove it")

    def _url(self, line: int | None, label: str, url: object) -> None:
        """``server`` / a ``[host."…"]`` name as containerd parses it: "https://" in front
        unless it starts with "http", then Go's url.Parse."""
        import urllib.parse

        if not isinstance(url, str):
            text = f"{label}: not a string; {self.rejects}"
            self.r.fail(self.path, line, text, 'write server = "https://HOST[:PORT]"')
            return
        full = url if url.startswith("http") else "https://" + url
        try:
            parts = urllib.parse.urlsplit(full)
            parts.port  # noqa: B018  (validates the port)
        except ValueError as exc:
            text = f"{label}: not a URL ({exc}); {self.rejects}"
            self.r.fail(self.path, line, text, 'write "https://HOST[:PORT]"')
            return
        if "://" in url and not url.startswith("http"):
            bad = "is not an http or https URL"
        elif parts.scheme not in ("http", "https") or not parts.netloc:
            bad = f"containerd reads it as {full!r}, which names no host"
        else:
            return
        effect = (
            f"containerd takes it for no server at all and pulls from {self.r.host} itself"
            if label.startswith("server")
            else "requests to it fail and every pull falls through to the next endpoint"
        )
        guess = (url.split("//", 1)[1] if "//" in url else url).strip("/") or "HOST[:PORT]"
        fix = f'write "https://{guess}" (or http:// for plain HTTP)'
        self.r.fail(self.path, line, f"{label}: {bad}: {effect}", fix)

    def _entry(self, at: tuple[str, ...], conf: Mapping[str, Any], where: str) -> None:
        """The keys of one endpoint: the top level (``at`` empty) or a ``[host."…"]`` table."""
        r, path = self.r, self.path
        if at:
            for key in conf:
                if key not in _HOST_KEYS_ALL:
                    self._unknown((*at, key), where.strip(), _HOST_KEYS_ALL)

        def bad(key: str, what: str, fix: str) -> None:
            r.fail(path, self.lines.line(*at, key), f"{where}{key}: {what}; {self.rejects}", fix)

        caps = conf.get("capabilities")
        if caps is not None:
            if isinstance(caps, list) and all(isinstance(c, str) for c in caps):
                self._capabilities(self.lines.line(*at, "capabilities"), where, caps)
            else:
                bad("capabilities", "not a list of strings", 'write e.g. ["pull", "resolve"]')
        for key in ("skip_verify", "override_path"):
            if key in conf and not isinstance(conf[key], bool):
                bad(key, f"{json.dumps(conf[key])} is not true or false", f"write {key} = true")
        if "header" in conf and not _is_header_table(conf["header"]):
            bad("header", "not a table of strings or lists of strings", '[header] NAME = "VALUE"')
        if "dial_timeout" in conf:
            self._dial_timeout(self.lines.line(*at, "dial_timeout"), where, conf["dial_timeout"])
        ca = conf.get("ca")
        if ca is not None:
            cas = [ca] if isinstance(ca, str) else ca
            if isinstance(cas, list) and cas and all(isinstance(c, str) and c for c in cas):
                for c in cas:
                    check_ca(
                        r, _absolute(c, self.dir), path, self.lines.line(*at, "ca"), where + "ca"
                    )
            else:
                bad("ca", "not a path or a list of paths", 'write ca = "ca.crt"')
        if "client" in conf:
            self._client(self.lines.line(*at, "client"), where, conf["client"])

    def _capabilities(self, line: int | None, where: str, caps: list[str]) -> None:
        unknown = [c for c in caps if c.lower() not in (*_CAPABILITIES, "referrers")]
        if unknown:
            kept: list[str] = []
            for c in caps:
                close = difflib.get_close_matches(c.lower(), _CAPABILITIES, n=1, cutoff=0.6)
                name = c.lower() if c.lower() in _CAPABILITIES else (close[0] if close else "")
                if name and name not in kept:
                    kept.append(name)
            text = (
                f"{where}capabilities: unknown capability {unknown[0]!r} (containerd knows "
                f"{', '.join(_CAPABILITIES)}, and referrers since 2.2); {self.rejects}"
            )
            fix = f"write capabilities = {json.dumps(kept or ['pull', 'resolve'])}"
            self.r.fail(self.path, line, text, fix)
        elif any(c.lower() == "referrers" for c in caps):
            text = (
                f'{where}capabilities: "referrers" is known to containerd 2.2 and later only: 1.6 '
                'to 2.1 reject the whole file ("unknown capability referrers") and use only the '
                f"*.crt / *.cert files of {self.dir}"
            )
            self.r.warn(
                self.path, line, text, 'drop "referrers" unless every node runs 2.2 or later'
            )

    def _dial_timeout(self, line: int | None, where: str, value: object) -> None:
        try:
            ok = isinstance(value, str) and parse_go_duration(value) >= 0
        except ValueError:
            ok = False
        if not ok:
            text = f"{where}dial_timeout: {json.dumps(value)} is not a duration; {self.rejects}"
            self.r.fail(self.path, line, text, 'write dial_timeout = "5s"')
            return
        text = f"{where}dial_timeout: containerd before 2.1 does not know it and ignores it"
        self.r.warn(self.path, line, text, "keep it if the nodes run containerd 2.1 or later")

    def _client(self, line: int | None, where: str, value: object) -> None:
        """``client``: a path, a list of paths, or a list of [cert, key] pairs."""
        r, path = self.r, self.path
        items = [value] if isinstance(value, str) else value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, str) and item:
                check_client(r, _absolute(item, self.dir), "", path, line, f"{where}client")
                continue
            if not _is_pair(item):
                text = f"{where}client: {json.dumps(item)} is not a path or a [cert, key] pair; "
                fix = 'write client = [["client.cert", "client.key"]]'
                r.fail(path, line, text + self.rejects, fix)
                continue
            cert, key = item
            if key:
                cert, key = _absolute(cert, self.dir), _absolute(key, self.dir)
                check_client(r, cert, key, path, line, f"{where}client")
                continue
            text = (
                f"{where}client {json.dumps(item)}: containerd makes the empty key path absolute, "
                f'i.e. the directory {self.dir}, and fails every pull from {r.host} ("unable to '
                'read CERT file … is a directory")'
            )
            fix = f'write client = "{cert}" when the key is in the same file, or ["{cert}", "KEY"]'
            r.fail(path, line, text, fix)

    def _crt_beside(self, doc: Mapping[str, Any]) -> None:
        named: set[str] = set()
        for conf in [doc, *_tables(doc.get("host"))]:
            ca = conf.get("ca")
            for c in [ca] if isinstance(ca, str) else ca if isinstance(ca, list) else []:
                if isinstance(c, str):
                    named.add(os.path.normpath(_absolute(c, self.dir)))
        for crt in _files(self.dir, ".crt"):
            if os.path.normpath(crt) not in named:
                text = f"{crt} is not read: containerd reads *.crt files only without a hosts.toml"
                fix = f'name it where it is needed: ca = "{os.path.basename(crt)}"'
                self.r.warn(self.path, None, text, fix)


def _is_pair(value: object) -> TypeGuard[list[str]]:
    """``[cert, key]``: two strings, the first not empty (the key may be, see :meth:`_client`)."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(i, str) for i in value)
        and bool(value[0])
    )


def _is_header_table(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(v, str) or (isinstance(v, list) and all(isinstance(i, str) for i in v))
        for v in value.values()
    )


def _absolute(path: str, directory: str) -> str:
    return path if os.path.isabs(path) else os.path.join(directory, path)


def _tables(value: object) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, dict):
        yield from (v for v in value.values() if isinstance(v, dict))


def _files(directory: str, suffix: str) -> list[str]:
    try:
        with os.scandir(directory) as it:
            names = sorted(e.name for e in it if not e.is_dir(follow_symlinks=False))
    except OSError:
        return []
    return [os.path.join(directory, n) for n in names if n.endswith(suffix)]


def _children(directory: str) -> list[str]:
    try:
        return sorted(os.path.join(directory, n) for n in os.listdir(directory))
    except OSError:
        return []


def _scheme_named(root: str) -> list[str]:
    """Entries of a hosts directory named with a URL scheme (``https:``, ``https_harbor``)."""
    return [p for p in _children(root) if re.match(r"(?i)https?(%3a|[:_])", os.path.basename(p))]
