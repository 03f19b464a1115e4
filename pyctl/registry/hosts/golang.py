"""Go's rules, where pyctl must read names, paths and durations exactly as containerd (a Go
program) does.

* :func:`clean`, :func:`join`, :func:`dirname`: Go ``path.Clean`` / ``path.Join`` /
  ``filepath.Dir`` (on Linux ``filepath`` and ``path`` agree: ``/`` only). Unlike
  ``os.path.normpath``, a leading ``//`` collapses and ``..`` above the root is dropped.
* :func:`match` and :func:`glob`: Go ``filepath.Match`` / ``filepath.Glob``. Unlike Python's
  ``fnmatch``/``glob``: ``*`` also matches names starting with ``.``, a class is negated with
  ``^`` (``[!…]`` is a class holding ``!``), ``\\`` escapes the next character, a malformed
  pattern (``[``, ``[]a]``, ``[a-]``, a trailing ``\\``) is an error rather than literal text,
  and the matches come sorted, directory by directory. I/O errors while globbing are ignored
  (an unreadable or missing directory matches nothing), as in Go.
* :func:`split_host_port`: ``net.SplitHostPort``, leniently (no port is no error).
* :func:`is_localhost`: containerd's ``docker.IsLocalhost``.
* :func:`parse_go_duration`: ``time.ParseDuration`` (``dial_timeout``).
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from functools import lru_cache


class BadPattern(ValueError):
    """Go ``filepath.ErrBadPattern``."""

    def __init__(self, pattern: str) -> None:
        super().__init__(f"syntax error in pattern {pattern!r}")
        self.pattern = pattern


def clean(p: str) -> str:
    """Go ``path.Clean`` (lexical, ``/``-separated; ``//`` collapses, unlike posixpath)."""
    if p == "":
        return "."
    rooted = p.startswith("/")
    out: list[str] = []
    for seg in p.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(seg)
    cleaned = "/".join(out)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def join(*elems: str) -> str:
    """Go ``path.Join``: join the non-empty elements with ``/`` and clean ("" when none)."""
    nonempty = [e for e in elems if e]
    if not nonempty:
        return ""
    return clean("/".join(nonempty))


def dirname(p: str) -> str:
    """Go ``filepath.Dir``: all but the last element, cleaned (``.`` when there is no ``/``)."""
    return clean(p[: p.rfind("/") + 1])


def has_meta(p: str) -> bool:
    """Whether ``p`` holds a character :func:`match` treats specially (``*?[\\``)."""
    return any(c in p for c in "*?[\\")


def match(pattern: str, name: str) -> bool:
    """Go ``filepath.Match``: does all of ``name`` match ``pattern``? :class:`BadPattern` when
    the pattern is malformed (checked whole, whatever ``name`` is)."""
    return _compile(pattern).fullmatch(name) is not None


def glob(pattern: str) -> list[str]:
    """Go ``filepath.Glob``: the existing paths matching ``pattern``, sorted per directory.

    A pattern without meta characters gives itself when it exists (``lstat``); meta
    characters in directory parts are expanded first. :class:`BadPattern` when malformed.
    """
    _compile(pattern)
    return _glob(pattern)


def _glob(pattern: str) -> list[str]:
    if not has_meta(pattern):
        try:
            os.lstat(pattern)
        except (OSError, ValueError):
            return []
        return [pattern]
    cut = pattern.rfind("/") + 1
    directory, file = pattern[:cut], pattern[cut:]
    if directory == "":
        directory = "."
    elif directory != "/":
        directory = directory[:-1]
    if not has_meta(directory):
        return _glob_in(directory, file, [])
    matches: list[str] = []
    for d in _glob(directory):
        matches = _glob_in(d, file, matches)
    return matches


def _glob_in(directory: str, pattern: str, matches: list[str]) -> list[str]:
    try:
        if not stat.S_ISDIR(os.stat(directory).st_mode):
            return matches
        names = sorted(os.listdir(directory))
    except (OSError, ValueError):
        return matches  # Go ignores I/O errors here
    regex = _compile(pattern)
    return matches + [join(directory, n) for n in names if regex.fullmatch(n)]


@lru_cache(maxsize=64)
def _compile(pattern: str) -> re.Pattern[str]:
    """``pattern`` as a regular expression, validated by Go's grammar:

    term = ``*`` (any run of non-``/``) | ``?`` (one non-``/``) | ``\\`` c | c |
    ``[`` [``^``] range {range} ``]``;  range = c | ``\\`` c | lo ``-`` hi, where a bare c
    in a class is not ``-`` or ``]``.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "\\":
            if i + 1 >= n:
                raise BadPattern(pattern)
            out.append(re.escape(pattern[i + 1]))
            i += 2
        elif c == "[":
            regex, i = _class(pattern, i + 1)
            out.append(regex)
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out), re.DOTALL)


def _class(pattern: str, i: int) -> tuple[str, int]:
    """The class starting after ``[`` at ``i``: (regex, index after ``]``)."""
    n = len(pattern)
    negated = i < n and pattern[i] == "^"
    if negated:
        i += 1
    ranges: list[tuple[str, str]] = []
    while True:
        if i < n and pattern[i] == "]" and ranges:
            i += 1
            break
        lo, i = _class_char(pattern, i)
        hi = lo
        if pattern[i] == "-":
            hi, i = _class_char(pattern, i + 1)
        ranges.append((lo, hi))
    parts = [f"{re.escape(lo)}-{re.escape(hi)}" for lo, hi in ranges if lo <= hi]
    if not parts:  # only empty ranges (hi < lo): matches nothing, or anything when negated
        return ("." if negated else "(?!)"), i
    return f"[{'^' if negated else ''}{''.join(parts)}]", i


def _class_char(pattern: str, i: int) -> tuple[str, int]:
    """Go ``getEsc``: one possibly escaped character of a class; something must follow it."""
    n = len(pattern)
    if i >= n or pattern[i] in "-]":
        raise BadPattern(pattern)
    if pattern[i] == "\\":
        i += 1
        if i >= n:
            raise BadPattern(pattern)
    if i + 1 >= n:
        raise BadPattern(pattern)
    return pattern[i], i + 1


def split_host_port(hostport: str) -> tuple[str, str]:
    """Go ``net.SplitHostPort`` leniently: ``(host, port)``; port "" when there is none.

    ``[::1]:5000`` → ``("::1", "5000")``; ``[::1]`` → ``("::1", "")``; ``::1`` → ``("::1", "")``.
    """
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            return hostport, ""
        rest = hostport[end + 1 :]
        port = rest[1:] if rest.startswith(":") else ""
        return hostport[1:end], port
    if hostport.count(":") == 1:
        host, _, port = hostport.partition(":")
        return host, port
    return hostport, ""


def is_localhost(hostport: str) -> bool:
    """containerd ``docker.IsLocalhost``: ``localhost`` or a loopback IP, port ignored."""
    host = split_host_port(hostport)[0]
    if host.lower() == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def parse_go_duration(text: str) -> float:
    """Go ``time.ParseDuration`` → seconds (``"3s"``, ``"500ms"``, ``"1m30s"``, ``"1.5h"``)."""
    m = _DURATION_RE.fullmatch(text)
    if m is None:
        if text in ("0", "+0", "-0"):
            return 0.0
        raise ValueError(f"invalid duration {text!r}")
    total = 0.0
    for number, unit in _DURATION_PART_RE.findall(m.group(2)):
        total += float(number) * _DURATION_UNITS[unit]
    return -total if m.group(1) == "-" else total


_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_UNIT_ALT = "ns|us|\u00b5s|\u03bcs|ms|s|m|h"
_DURATION_PART = rf"(\d+\.?\d*|\.\d+)({_DURATION_UNIT_ALT})"
_DURATION_PART_RE = re.compile(_DURATION_PART)
_DURATION_RE = re.compile(rf"([-+]?)((?:{_DURATION_PART})+)")
