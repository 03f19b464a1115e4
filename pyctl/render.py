"""Output rendering for listing commands: sizes, durations, tables and ``--format``.

Public API::

    human_size(n, precision=4) -> str            go-units HumanSize: "0B", "1.024kB", "7.8MB"
    human_duration(d) -> str                     go-units HumanDuration ("About a minute", ...)
    time_since(dt, now=None) -> str              human_duration(now - dt) + " ago"
    tabwrite(text, minwidth=4, padding=4) -> str Go text/tabwriter(minwidth, 8, padding, ' ', 0)
    go_text(value) -> str                        a value as Go's fmt "%v" prints it
    go_json(value, keep_order=False) -> str      a value as docker's template ``json`` prints it
    Formatter(fmt, columns, *, fields=(), headers=None)
        .kind ("table" | "json" | "template"), .uses(field) -> bool,
        .render(rows) -> str

Some 530 lines, on purpose: docker's and nerdctl's output rules in one place (units, Go's
time and float printing, tabwriter, the template subset), each of them small.

Decisions:

* Sizes: ``human_size`` is go-units ``HumanSize`` = ``HumanSizeWithPrecision(n, 4)``,
  i.e. decimal units (kB = 1000) and Go's ``%.4g``: 0 → ``0B``, 512 → ``512B``,
  1000 → ``1kB``, 1024 → ``1.024kB``, 7_800_000 → ``7.8MB``, 87_654_321 → ``87.65MB``.
  This is what nerdctl 2.x prints for SIZE and BLOB SIZE. ``precision=3`` gives docker's
  ``docker image ls`` variant (``87.7MB``).
* Durations are computed on integer nanoseconds, like Go's ``time.Duration``. A negative
  duration (clock skew) is ``Less than a second``, as in go-units.
* Tables use nerdctl's ``tabwriter.NewWriter(w, 4, 8, 4, ' ', 0)``: every cell except the last
  of a line is padded to (widest cell in its column block + 4), at least 4; the last cell is
  never padded. Column blocks follow Go's rules (consecutive lines having that column).

``--format`` (the :class:`Formatter`), following docker's ``formatter.Context``:

* ``None``, ``""`` or ``"table"``: the default table from ``columns`` (header row included).
* ``"json"``: one JSON object per line, the same as ``{{json .}}``.
* anything else is a Go-template subset, after trimming spaces and replacing the two-character
  sequences ``\\t``/``\\n`` by TAB/newline: literal text, ``{{.Field}}``, ``{{json .}}``,
  ``{{json .Field}}``, ``{{/* comment */}}``, whitespace inside braces and the ``{{-``/``-}}``
  trim markers. A leading ``table`` makes it a table: a header row (literal text kept, each
  field replaced by its header; ``{{json .}}`` gives an empty header) and alignment with the
  tabwriter; the header is printed even when there are no rows.
* Each row's output is followed by a newline.
* The template is parsed in the constructor, so a bad one raises :class:`FormatError` before
  anything is printed: ``template: unknown field "Foo" (known: ID, Repository, ...)``, an
  unclosed ``{{``, or an unsupported action (``range``, ``if``, functions other than ``json``).
* Known fields are the fields of ``columns`` plus ``fields``. A field's header comes from
  ``columns``, then ``headers``, else it is the field name upper-cased. A known field missing
  from a row renders as an empty string.

Values (``dict[str, object]`` rows): ``{{.Field}}`` prints like Go's ``%v``: strings as is,
ints in decimal, bools as ``true``/``false``, None as ``<nil>``, a dict as a Go map
``map[k1:v1 k2:v2]`` (keys sorted), a list as ``[a b c]``. ``json`` encodes like Go's
``encoding/json`` with HTML escaping off: compact, non-ASCII kept, a row's keys in insertion
order (a Go struct's field order), keys of nested dicts sorted (a Go map).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal, NamedTuple

from pyctl.errors import FormatError

__all__ = [
    "Formatter",
    "go_json",
    "go_text",
    "human_duration",
    "human_size",
    "tabwrite",
    "time_since",
]

# --- sizes -----------------------------------------------------------------------------------

_DECIMAL_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def short_id(digest_or_id: str) -> str:
    """The 12 hex digits docker and nerdctl show for an ID or ``sha256:`` digest."""
    return digest_or_id.split(":", 1)[-1][:12]


def human_size(n: float, precision: int = 4) -> str:
    """go-units ``HumanSizeWithPrecision(n, precision)``; the default is ``HumanSize``."""
    size = float(n)
    i = 0
    while size >= 1000.0 and i < len(_DECIMAL_UNITS) - 1:
        size /= 1000.0
        i += 1
    # Python's %g and Go's %g agree for finite values: same significant digits, same
    # switch to exponent form, trailing zeros removed, two-digit exponent minimum.
    return f"{size:.{precision}g}{_DECIMAL_UNITS[i]}"


# --- durations -------------------------------------------------------------------------------

_NS_PER_SECOND = 1_000_000_000
_NS_PER_MINUTE = 60 * _NS_PER_SECOND
_NS_PER_HOUR = 60 * _NS_PER_MINUTE


def _to_ns(d: float | timedelta) -> int:
    if isinstance(d, timedelta):
        return (d.days * 86_400 + d.seconds) * _NS_PER_SECOND + d.microseconds * 1000
    return round(d * _NS_PER_SECOND)


def _trunc_div(a: int, b: int) -> int:
    """Go integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def human_duration(d: float | timedelta) -> str:
    """go-units ``HumanDuration``; ``d`` in seconds (float) or a timedelta.

    Thresholds: < 1 s ``Less than a second``; ``1 second``; < 60 s ``N seconds``;
    1 min ``About a minute``; < 60 min ``N minutes``; hours rounded half up:
    1 ``About an hour``, < 48 ``N hours``, < 14 days ``N days``, < 60 days ``N weeks``,
    < 2×365 days ``N months`` (30-day months), else ``N years`` (365-day years).
    """
    ns = _to_ns(d)
    seconds = _trunc_div(ns, _NS_PER_SECOND)
    if seconds < 1:
        return "Less than a second"
    if seconds == 1:
        return "1 second"
    if seconds < 60:
        return f"{seconds} seconds"
    minutes = ns // _NS_PER_MINUTE
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    # Go: int(d.Hours() + 0.5) with Hours() = float(whole hours) + float(rest)/3.6e12
    whole, rest = divmod(ns, _NS_PER_HOUR)
    hours_f = float(whole) + float(rest) / (60 * 60 * 1e9)
    hours = int(hours_f + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(hours_f) // 24 // 365} years"


def time_since(dt: datetime, now: datetime | None = None) -> str:
    """nerdctl ``TimeSinceInHuman``: ``human_duration(now - dt) + " ago"``.

    Naive datetimes are taken as UTC; ``now`` defaults to the current time.
    """
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return human_duration(now - dt) + " ago"


# --- tabwriter -------------------------------------------------------------------------------


def tabwrite(text: str, minwidth: int = 4, padding: int = 4) -> str:
    """Align TAB-separated cells like Go's ``tabwriter.NewWriter(w, minwidth, 8, padding,
    ' ', 0)`` followed by ``Flush``.

    Cells are TAB-terminated: the text after a line's last TAB is not part of any column and
    is never padded. A column's width is computed over a *block* of consecutive lines that
    all have a cell in that column.
    """
    lines = [line.split("\t") for line in text.split("\n")]
    out: list[str] = []
    widths: list[int] = []

    def write_lines(line0: int, line1: int) -> None:
        for i in range(line0, line1):
            cells = lines[i]
            for j, cell in enumerate(cells):
                out.append(cell.ljust(widths[j]) if j < len(widths) else cell)
            if i + 1 < len(lines):
                out.append("\n")

    def fmt(line0: int, line1: int) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            write_lines(line0, this)
            line0 = this
            width = minwidth
            while this < line1 and column < len(lines[this]) - 1:
                width = max(width, len(lines[this][column]) + padding)
                this += 1
            widths.append(width)
            fmt(line0, this)
            widths.pop()
            line0 = this
        write_lines(line0, line1)

    fmt(0, len(lines))
    return "".join(out)


# --- Go value formatting ---------------------------------------------------------------------


def _float_digits(f: float) -> tuple[str, int]:
    """Shortest round-trip decimal digits of abs(f) and Go's decimal-point position ``dp``
    (value = 0.DIGITS × 10**dp)."""
    from decimal import Decimal

    _sign, digit_tuple, exponent = Decimal(repr(abs(f))).as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    if not digits:
        return "0", 1
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)
    return stripped, len(stripped) + exponent


def _fmt_e(digits: str, dp: int) -> str:
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    exp = dp - 1 if digits != "0" else 0
    sign = "-" if exp < 0 else "+"
    return f"{mantissa}e{sign}{abs(exp):02d}"


def _fmt_f(digits: str, dp: int) -> str:
    nd = len(digits)
    whole = (digits[:dp] + "0" * (dp - nd) if dp > 0 else "0") if digits != "0" else "0"
    frac_len = max(nd - dp, 0) if digits != "0" else 0
    frac = "".join(digits[dp + i] if 0 <= dp + i < nd else "0" for i in range(frac_len))
    return whole + ("." + frac if frac else "")


def _go_float_v(f: float) -> str:
    """Go's ``%v`` for a float64 (strconv 'g', shortest)."""
    if f != f:
        return "NaN"
    if f in (float("inf"), float("-inf")):
        return "+Inf" if f > 0 else "-Inf"
    neg = "-" if f < 0 or (f == 0 and repr(f).startswith("-")) else ""
    digits, dp = _float_digits(f)
    exp = dp - 1
    if digits != "0" and (exp < -4 or exp >= 6):
        return neg + _fmt_e(digits, dp)
    return neg + _fmt_f(digits, dp)


def _go_float_json(f: float) -> str:
    """Go's ``encoding/json`` for a float64."""
    if f != f or f in (float("inf"), float("-inf")):
        raise FormatError(f"json: unsupported value: {_go_float_v(f)}")
    neg = "-" if f < 0 else ""
    digits, dp = _float_digits(f)
    a = abs(f)
    if a != 0 and (a < 1e-6 or a >= 1e21):
        text = _fmt_e(digits, dp)
        text = re.sub(r"e-0(\d)$", r"e-\1", text)
        return neg + text
    return neg + _fmt_f(digits, dp)


def go_text(value: object) -> str:
    """``value`` as Go's ``fmt`` ``%v`` prints it (what ``{{.Field}}`` outputs)."""
    if isinstance(value, str):
        return value
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float_v(value)
    if isinstance(value, Mapping):
        items = sorted(value.items(), key=lambda kv: str(kv[0]))
        return "map[" + " ".join(f"{go_text(k)}:{go_text(v)}" for k, v in items) + "]"
    if isinstance(value, list | tuple):
        return "[" + " ".join(go_text(v) for v in value) + "]"
    return str(value)


def _json_string(s: str) -> str:
    return (
        json.dumps(s, ensure_ascii=False).replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    )


def _json(value: object, top: bool) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float_json(value)
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, Mapping):
        items = list(value.items())
        if not top:
            items.sort(key=lambda kv: str(kv[0]))
        body = ",".join(f"{_json_string(str(k))}:{_json(v, False)}" for k, v in items)
        return "{" + body + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_json(v, False) for v in value) + "]"
    return _json_string(str(value))


def go_json(value: object, *, keep_order: bool = False) -> str:
    """``value`` as docker's template function ``json`` prints it.

    Dicts are Go maps (keys sorted), except that with ``keep_order`` the top-level dict keeps
    its key order, as a Go struct (a row) does.
    """
    return _json(value, keep_order)


# --- templates -------------------------------------------------------------------------------

_FIELD_RE = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)", re.ASCII)
_KEYWORDS = frozenset(
    {"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"}
)
_SUPPORTED = "supported: {{.Field}}, {{json .}}, {{json .Field}}"


class _Literal(NamedTuple):
    text: str


class _Field(NamedTuple):
    name: str
    as_json: bool


class _WholeJSON:
    """``{{json .}}``: the whole row as JSON."""


_Node = _Literal | _Field | _WholeJSON


def _parse_template(tmpl: str, known: Sequence[str]) -> list[_Node]:
    known_set = set(known)
    nodes: list[_Node] = []
    pos = 0
    trim_next = False
    while True:
        start = tmpl.find("{{", pos)
        literal = tmpl[pos:] if start < 0 else tmpl[pos:start]
        if trim_next:
            literal = literal.lstrip(" \t\r\n")
        if start < 0:
            if literal:
                nodes.append(_Literal(literal))
            return nodes
        end = tmpl.find("}}", start + 2)
        if end < 0:
            raise FormatError(f'template: unclosed action: missing "}}}}" after {tmpl[start:]!r}')
        inner = tmpl[start + 2 : end]
        pos = end + 2
        if inner[:1] == "-" and inner[1:2] in (" ", "\t", "\r", "\n"):
            literal = literal.rstrip(" \t\r\n")
            inner = inner[1:]
        trim_next = inner[-1:] == "-" and inner[-2:-1] in (" ", "\t", "\r", "\n")
        if trim_next:
            inner = inner[:-1]
        if literal:
            nodes.append(_Literal(literal))
        node = _parse_action(inner.strip(" \t\r\n"), tmpl[start : end + 2], known, known_set)
        if node is not None:
            nodes.append(node)


def _parse_action(
    action: str, source: str, known: Sequence[str], known_set: set[str]
) -> _Node | None:
    if action.startswith("/*") and action.endswith("*/") and len(action) >= 4:
        return None  # a comment
    words = action.split()
    if not words:
        raise FormatError(f"template: missing value for command in {source!r}")

    def field(arg: str, as_json: bool) -> _Field:
        m = _FIELD_RE.fullmatch(arg)
        if m is None:
            raise FormatError(f"template: unsupported argument {arg!r} in {source!r}; {_SUPPORTED}")
        name = m.group(1)
        if name not in known_set:
            raise FormatError(f'template: unknown field "{name}" (known: {", ".join(known)})')
        return _Field(name, as_json)

    if len(words) == 1 and words[0].startswith("."):
        if words[0] == ".":
            raise FormatError(f"template: unsupported action {source!r}; {_SUPPORTED}")
        return field(words[0], False)
    if words[0] == "json" and len(words) == 2:
        if words[1] == ".":
            return _WholeJSON()
        return field(words[1], True)
    if words[0] in _KEYWORDS:
        raise FormatError(
            f"template: unsupported action {source!r}: {words[0]!r} is not supported; " + _SUPPORTED
        )
    raise FormatError(f"template: unsupported action {source!r}; {_SUPPORTED}")


class Formatter:
    """Renders rows for ``--format`` (see the module docstring).

    ``columns`` is the default table as ``[(Field, HEADER), ...]``; ``fields`` names further
    fields a template may use; ``headers`` gives header names for those fields.
    """

    def __init__(
        self,
        fmt: str | None,
        columns: Sequence[tuple[str, str]],
        *,
        fields: Iterable[str] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._known: list[str] = []
        self._headers: dict[str, str] = dict(headers or {})
        for name, header in columns:
            if name not in self._known:
                self._known.append(name)
            self._headers[name] = header
        for name in fields:
            if name not in self._known:
                self._known.append(name)

        spec = (fmt or "").strip(" ")
        self.kind: Literal["table", "json", "template"]
        if spec == "json":
            self.kind = "json"
            self._nodes: list[_Node] = [_WholeJSON()]
            return
        if not spec or spec.startswith("table"):
            self.kind = "table"
            spec = spec[len("table") :].strip(" ")
        else:
            self.kind = "template"
        if self.kind == "table" and not spec:
            self._nodes = []
            for i, (name, _header) in enumerate(columns):
                if i:
                    self._nodes.append(_Literal("\t"))
                self._nodes.append(_Field(name, False))
        else:
            spec = spec.replace("\\t", "\t").replace("\\n", "\n")
            self._nodes = _parse_template(spec, self._known)

    def uses(self, field: str) -> bool:
        """Whether rendering needs ``field`` (lets a command skip expensive columns)."""
        for node in self._nodes:
            if isinstance(node, _WholeJSON):
                return True
            if isinstance(node, _Field) and node.name == field:
                return True
        return False

    def header_of(self, field: str) -> str:
        return self._headers.get(field, field.upper())

    def _execute(self, row: Mapping[str, object]) -> str:
        parts: list[str] = []
        for node in self._nodes:
            if isinstance(node, _Literal):
                parts.append(node.text)
            elif isinstance(node, _WholeJSON):
                parts.append(go_json(row, keep_order=True))
            elif node.name not in row:
                parts.append("")
            elif node.as_json:
                parts.append(go_json(row[node.name]))
            else:
                parts.append(go_text(row[node.name]))
        return "".join(parts)

    def _header(self) -> str:
        parts: list[str] = []
        for node in self._nodes:
            if isinstance(node, _Literal):
                parts.append(node.text)
            elif isinstance(node, _Field):
                parts.append(self.header_of(node.name))
        return "".join(parts)

    def render(self, rows: Iterable[Mapping[str, object]]) -> str:
        """The whole output for ``rows``; each row (and the header) ends with a newline."""
        body = "".join(self._execute(row) + "\n" for row in rows)
        if self.kind == "table":
            return tabwrite(self._header() + "\n" + body)
        return body


def go_time(dt: datetime) -> str:
    """A timestamp as Go's ``time.Time.String()`` prints it, in local time:
    ``2024-05-01 10:00:00 +0200 CEST``."""
    local = dt.astimezone()
    return local.strftime("%Y-%m-%d %H:%M:%S %z ") + (local.tzname() or "")


def container_status(state: str, exit_code: int | None, exited_at: datetime | None) -> str:
    """The STATUS column as nerdctl shows it: ``Up``, ``Created``, ``Exited (CODE) … ago``,
    ``Paused``."""
    if state == "running":
        return "Up"
    if state == "exited":
        ago = time_since(exited_at) if exited_at else ""
        return f"Exited ({exit_code}) {ago}".strip()
    return state.title()
