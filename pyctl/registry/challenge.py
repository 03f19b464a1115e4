"""``WWW-Authenticate`` challenges as registries send them (RFC 7235, leniently): the scheme
(bearer or basic) and its parameters (realm, service, scope, error). Unparseable parts are
skipped, never raised."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple


class Challenge(NamedTuple):
    """One ``WWW-Authenticate`` challenge: lower-cased scheme and parameter names."""

    scheme: str
    params: Mapping[str, str]

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")

    @property
    def service(self) -> str | None:
        return self.params.get("service")

    @property
    def scope(self) -> str | None:
        """The raw ``scope`` parameter (may hold several scopes separated by spaces)."""
        return self.params.get("scope")

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple((self.scope or "").split())

    @property
    def error(self) -> str | None:
        return self.params.get("error")


_TCHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_WS = " \t\r\n"
_SCHEME_RANK = {"bearer": 0, "basic": 1}


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _WS:
            self.pos += 1

    def token(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _TCHARS:
            self.pos += 1
        return self.text[start : self.pos]

    def quoted(self) -> str | None:
        """After an opening quote; None if the string is unterminated."""
        out: list[str] = []
        self.pos += 1
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            self.pos += 1
            if ch == "\\":
                if self.pos >= len(self.text):
                    return None
                out.append(self.text[self.pos])
                self.pos += 1
            elif ch == '"':
                return "".join(out)
            else:
                out.append(ch)
        return None

    def bare_value(self) -> str:
        # Lenient: everything up to a comma or whitespace (so an unquoted realm URL works).
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in ',"' + _WS:
            self.pos += 1
        return self.text[start : self.pos]

    def skip_element(self) -> None:
        """Skip to just after the next top-level comma (or to the end)."""
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == '"':
                if self.quoted() is None:
                    self.pos = len(self.text)
                continue
            self.pos += 1
            if ch == ",":
                return


def _parse_header_value(value: str) -> list[Challenge]:
    """Challenges in one header value. One challenge per value is the norm; several
    comma-separated challenges (RFC 7235, and what a client library produces when it joins
    repeated headers) are also recognised: after a comma, a token not followed by ``=``
    starts a new challenge."""
    sc = _Scanner(value)
    result: list[Challenge] = []
    scheme: str | None = None
    params: dict[str, str] = {}

    def finish() -> None:
        if scheme is not None:
            result.append(Challenge(scheme, dict(params)))

    first_after_scheme = False
    while True:
        sc.skip_ws()
        if sc.pos >= len(sc.text):
            break
        if sc.peek() == ",":
            sc.pos += 1
            first_after_scheme = False
            continue
        name = sc.token()
        if not name:
            # Garbage where a scheme or parameter should be: drop this list element.
            sc.skip_element()
            first_after_scheme = False
            continue
        after_name = sc.pos
        sc.skip_ws()
        if sc.peek() == "=" and scheme is not None:
            sc.pos += 1
            sc.skip_ws()
            if sc.peek() == '"':
                quoted = sc.quoted()
                if quoted is None:  # unterminated: ignore the rest of the value
                    break
                val = quoted
            else:
                val = sc.bare_value()
            params[name.lower()] = val
            first_after_scheme = False
            sc.skip_ws()
            if sc.peek() not in ("", ","):
                # junk after a value: skip to the next element
                sc.skip_element()
            continue
        if sc.peek() == "=" and scheme is None:
            # "key=value" with no scheme before it: not a challenge.
            sc.skip_element()
            continue
        if first_after_scheme:
            # token68 (e.g. "Negotiate abc==" / "Basic dXNlcg=="): not used by registries.
            sc.pos = after_name
            while sc.pos < len(sc.text) and sc.text[sc.pos] not in "," + _WS:
                sc.pos += 1
            first_after_scheme = False
            continue
        # A token not followed by "=": a new challenge's scheme.
        finish()
        scheme, params = name.lower(), {}
        first_after_scheme = True
    finish()
    return result


def parse_www_authenticate(values: Sequence[str] | str | None) -> list[Challenge]:
    """Parse ``WWW-Authenticate`` header values (one challenge per value, as containerd does;
    comma-joined challenges are split too). Unparseable parts are skipped, never raised.
    Returns bearer challenges first, then basic, then other schemes, otherwise in order."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    found: list[Challenge] = []
    for value in values:
        if not isinstance(value, str) or not value.strip():
            continue
        found.extend(_parse_header_value(value))
    return sorted(found, key=lambda c: _SCHEME_RANK.get(c.scheme, 2))
