"""Image references: the docker/distribution reference grammar and its normalization.

Every command that takes an image name goes through this module, so that pyctl reads
``ubuntu``, ``library/ubuntu``, ``docker.io/ubuntu`` and ``index.docker.io/library/ubuntu``
as the same image, exactly as docker, nerdctl and the CRI plugin do.

Grammar (distribution/reference ``regexp.go``)::

    reference   := name [ ":" tag ] [ "@" digest ]
    name        := [ domain "/" ] remote-name
    domain      := host [ ":" port ]          host: domain-name | "[" ipv6 "]"
    remote-name := path-component ( "/" path-component )*
    path-component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
    tag         := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest      := algorithm ":" hex{32,}

Public API::

    Reference(domain, path, tag=None, digest=None)      immutable (a NamedTuple)
        .name, .familiar_name, .familiar(), str(ref)
    parse(s) -> Reference                   strict Parse (no normalization)
    parse_normalized_named(s) -> Reference  ParseNormalizedNamed (docker.io/library/...)
    parse_docker_ref(s) -> Reference        ParseDockerRef: digest wins, default ":latest"
    familiarize(ref_or_string) -> str       FamiliarString
    parse_repo_tag(s) -> (repository, tag)  nerdctl ParseRepoTag ("" , "" when unparsable)
    DIGEST_RE, IDENTIFIER_RE, TAG_RE, NAME_TOTAL_LENGTH_MAX

Decisions:

* Only ``sha256`` is a supported digest algorithm (like a go-digest binary that links only
  crypto/sha256, which is what upstream's tests assume); ``sha512:...`` is rejected with
  ``unsupported digest algorithm``.
* Every error is an :class:`~pyctl.errors.InvalidReferenceError` whose message names the
  input: ``invalid reference "X": <upstream message>`` (the 64-hex error already names it).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from pyctl.errors import InvalidReferenceError
from pyctl.oci import is_digest

__all__ = [
    "DEFAULT_DOMAIN",
    "DIGEST_RE",
    "IDENTIFIER_RE",
    "LEGACY_DEFAULT_DOMAIN",
    "NAME_TOTAL_LENGTH_MAX",
    "OFFICIAL_REPO_PREFIX",
    "TAG_RE",
    "Reference",
    "familiarize",
    "parse",
    "parse_docker_ref",
    "parse_normalized_named",
    "parse_repo_tag",
]

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

# Upstream error texts (distribution/reference errors.go, go-digest digest.go).
ERR_REFERENCE_INVALID_FORMAT = "invalid reference format"
ERR_NAME_CONTAINS_UPPERCASE = "repository name must be lowercase"
ERR_NAME_EMPTY = "repository name must have at least one component"
ERR_NAME_TOO_LONG = f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
ERR_DIGEST_INVALID_FORMAT = "invalid checksum digest format"
ERR_DIGEST_INVALID_LENGTH = "invalid checksum digest length"
ERR_DIGEST_UNSUPPORTED = "unsupported digest algorithm"

# --- grammar -------------------------------------------------------------------------------

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_REMOTE_NAME = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = rf"(?:{_DOMAIN_NAME}|{_IPV6})"
_DOMAIN_AND_PORT = rf"{_HOST}(?::[0-9]+)?"
_NAME = rf"(?:{_DOMAIN_AND_PORT}/)?{_REMOTE_NAME}"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

# re.ASCII: \w is [A-Za-z0-9_] as in Go's RE2. All patterns are used with fullmatch().
_REFERENCE_RE = re.compile(rf"({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?", re.ASCII)
_ANCHORED_NAME_RE = re.compile(rf"(?:({_DOMAIN_AND_PORT})/)?({_REMOTE_NAME})", re.ASCII)

#: A full image ID: exactly 64 lowercase hex characters. Use with fullmatch().
IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}", re.ASCII)
#: A digest string per the reference grammar (algorithm ":" 32+ hex). Use with fullmatch().
DIGEST_RE: re.Pattern[str]
#: A tag. Use with fullmatch().
TAG_RE: re.Pattern[str]
_LAZY_PATTERNS = {"DIGEST_RE": _DIGEST, "TAG_RE": _TAG}  # compiled at first use, not every start


def __getattr__(name: str) -> re.Pattern[str]:
    if name not in _LAZY_PATTERNS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    pattern = globals()[name] = re.compile(_LAZY_PATTERNS[name], re.ASCII)
    return pattern


# Registered digest algorithms -> length of the hex encoding.
_DIGEST_ALGORITHMS: dict[str, int] = {"sha256": 64}
_LOWER_HEX = frozenset("0123456789abcdef")


# --- the reference value ---------------------------------------------------------------------


class Reference(NamedTuple):
    """A parsed image reference.

    ``domain`` is empty for strictly parsed names without a domain and for digest-only
    references; ``path`` is the repository path without the domain (``library/ubuntu``).
    """

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``domain/path`` (just ``path`` when there is no domain)."""
        if self.domain:
            return f"{self.domain}/{self.path}"
        return self.path

    @property
    def familiar_name(self) -> str:
        """The short name docker shows: ``ubuntu``, ``foo/bar``, ``example.com/x``."""
        if self.domain == DEFAULT_DOMAIN:
            rest = self.path
            if rest.startswith(OFFICIAL_REPO_PREFIX):
                remainder = rest[len(OFFICIAL_REPO_PREFIX) :]
                if "/" not in remainder:
                    rest = remainder
            return rest
        return self.name

    def _with_suffix(self, name: str) -> str:
        out = name
        if self.tag is not None:
            out += ":" + self.tag
        if self.digest is not None:
            out += ("@" if out else "") + self.digest
        return out

    def familiar(self) -> str:
        """The familiar string: familiar name plus ``:tag`` and ``@digest``."""
        return self._with_suffix(self.familiar_name)

    def __str__(self) -> str:
        return self._with_suffix(self.name)


# --- helpers ---------------------------------------------------------------------------------


def _error(s: str, message: str) -> InvalidReferenceError:
    return InvalidReferenceError(f"invalid reference {_quote(s)}: {message}")


def _quote(s: str) -> str:
    escaped = s.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _digest_problem(d: str) -> str | None:
    """go-digest ``Digest.Validate``: None when valid (:func:`pyctl.oci.is_digest`), else the
    error text."""
    if is_digest(d):
        return None
    i = d.find(":")
    if i <= 0 or i + 1 == len(d):
        return ERR_DIGEST_INVALID_FORMAT
    algorithm, encoded = d[:i], d[i + 1 :]
    size = _DIGEST_ALGORITHMS.get(algorithm)
    if size is None:
        if re.fullmatch(_DIGEST, d, re.ASCII) is None:
            return ERR_DIGEST_INVALID_FORMAT
        return ERR_DIGEST_UNSUPPORTED
    if len(encoded) != size:
        return ERR_DIGEST_INVALID_LENGTH
    if not _LOWER_HEX.issuperset(encoded):  # (never empty: its length was checked)
        return ERR_DIGEST_INVALID_FORMAT
    return None


# --- parsing ---------------------------------------------------------------------------------


class _Problem(Exception):
    """Internal: an upstream error text, before the input is named."""


def parse(s: str) -> Reference:
    """Strict ``Parse``: the grammar only, no defaults (``ubuntu`` has no domain)."""
    try:
        return _parse(s)
    except _Problem as exc:
        raise _error(s, str(exc)) from None


def _parse(s: str) -> Reference:
    m = _REFERENCE_RE.fullmatch(s)
    if m is None:
        if s == "":
            raise _Problem(ERR_NAME_EMPTY)
        if _REFERENCE_RE.fullmatch(s.lower()) is not None:
            raise _Problem(ERR_NAME_CONTAINS_UPPERCASE)
        raise _Problem(ERR_REFERENCE_INVALID_FORMAT)
    name, tag, digest = m.group(1), m.group(2), m.group(3)
    nm = _ANCHORED_NAME_RE.fullmatch(name)
    if nm is not None and nm.group(1) is not None:
        domain, path = nm.group(1), nm.group(2)
    else:
        domain, path = "", name
    if len(path) > NAME_TOTAL_LENGTH_MAX:
        raise _Problem(ERR_NAME_TOO_LONG)
    if digest is not None:
        problem = _digest_problem(digest)
        if problem is not None:
            raise _Problem(problem)
    return Reference(domain=domain, path=path, tag=tag, digest=digest)


def _split_docker_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if not sep:
        return DEFAULT_DOMAIN, OFFICIAL_REPO_PREFIX + name
    if first == "localhost":
        domain, remote = first, rest
    elif first == LEGACY_DEFAULT_DOMAIN:
        domain, remote = DEFAULT_DOMAIN, rest
    elif "." in first or ":" in first or first.lower() != first:
        domain, remote = first, rest
    else:
        domain, remote = DEFAULT_DOMAIN, name
    if domain == DEFAULT_DOMAIN and "/" not in remote:
        remote = OFFICIAL_REPO_PREFIX + remote
    return domain, remote


def parse_normalized_named(s: str) -> Reference:
    """``ParseNormalizedNamed``: the name as docker reads it (``docker.io/library/…``)."""
    if IDENTIFIER_RE.fullmatch(s) is not None:
        raise InvalidReferenceError(
            f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"
        )
    domain, remainder = _split_docker_domain(s)
    remote = remainder.split(":", 1)[0]
    if remote.lower() != remote:
        raise _error(
            s, f"{ERR_REFERENCE_INVALID_FORMAT}: repository name ({remote}) must be lowercase"
        )
    try:
        return _parse(domain + "/" + remainder)
    except _Problem as exc:
        # The message names what the user typed, not our rewrite of it.
        raise _error(s, str(exc)) from None


def parse_docker_ref(s: str) -> Reference:
    """``ParseDockerRef``: normalized; a digest drops the tag; a bare name gets ``:latest``."""
    ref = parse_normalized_named(s)
    if ref.digest is not None:
        if ref.tag is not None:
            return Reference(domain=ref.domain, path=ref.path, tag=None, digest=ref.digest)
        return ref
    if ref.tag is None:
        return Reference(domain=ref.domain, path=ref.path, tag=DEFAULT_TAG, digest=None)
    return ref


def familiarize(ref: Reference | str) -> str:
    """``FamiliarString``: ``docker.io/library/ubuntu:22.04`` → ``ubuntu:22.04``.

    A string is parsed with :func:`parse_normalized_named` first.
    """
    if isinstance(ref, str):
        ref = parse_normalized_named(ref)
    return ref.familiar()


def parse_repo_tag(s: str) -> tuple[str, str]:
    """nerdctl's ``ParseRepoTag`` for listings: (familiar repository, tag).

    Parsed with :func:`parse_docker_ref`; a digest reference has an empty tag, and an
    unparsable name or a bare digest (CRI's ``sha256:<config>`` records) gives ``("", "")``
    (listings show these as ``<none>``).
    """
    if is_digest(s):
        return "", ""
    try:
        ref = parse_docker_ref(s)
    except InvalidReferenceError:
        return "", ""
    return ref.familiar_name, ref.tag or ""
