"""Tests for pyctl.render: sizes, durations, the tabwriter and --format templates."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from pyctl.errors import FormatError
from pyctl.render import (
    Formatter,
    go_json,
    go_text,
    human_duration,
    human_size,
    tabwrite,
    time_since,
)

# --- sizes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, "0B"),
        (1, "1B"),
        (512, "512B"),
        (999, "999B"),
        (1000, "1kB"),
        (1024, "1.024kB"),
        (1500, "1.5kB"),
        (999_999, "1000kB"),
        (1_000_000, "1MB"),
        (7_800_000, "7.8MB"),
        (87_654_321, "87.65MB"),
        (87_600_000, "87.6MB"),
        (1_200_000_000, "1.2GB"),
        (1_234_567_890, "1.235GB"),
        (5 * 10**12, "5TB"),
        (10**24, "1YB"),
        (10**27, "1000YB"),
    ],
)
def test_human_size(n: int, expected: str) -> None:
    assert human_size(n) == expected


@pytest.mark.parametrize(
    ("n", "expected"),
    [(0, "0B"), (1024, "1.02kB"), (87_654_321, "87.7MB"), (999_999, "1e+03kB")],
)
def test_human_size_precision_3(n: int, expected: str) -> None:
    assert human_size(n, 3) == expected


# --- durations -------------------------------------------------------------------------------

HOUR = 3600.0
DAY = 24 * HOUR


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (-5, "Less than a second"),
        (0, "Less than a second"),
        (0.999, "Less than a second"),
        (1, "1 second"),
        (1.999, "1 second"),
        (2, "2 seconds"),
        (59.999, "59 seconds"),
        (60, "About a minute"),
        (119.9, "About a minute"),
        (120, "2 minutes"),
        (3599, "59 minutes"),
        (3600, "About an hour"),
        (1.5 * HOUR - 1, "About an hour"),
        (1.5 * HOUR, "2 hours"),
        (47 * HOUR, "47 hours"),
        (47.5 * HOUR - 1, "47 hours"),
        (47.5 * HOUR, "2 days"),
        (13 * DAY, "13 days"),
        (14 * DAY - 0.5 * HOUR - 1, "13 days"),
        (14 * DAY - 0.5 * HOUR, "2 weeks"),
        (59 * DAY, "8 weeks"),
        (60 * DAY, "2 months"),
        (365 * DAY, "12 months"),
        (2 * 365 * DAY - HOUR, "24 months"),
        (2 * 365 * DAY - 0.5 * HOUR, "1 years"),  # go-units quirk: rounded vs truncated hours
        (2 * 365 * DAY, "2 years"),
        (10 * 365 * DAY, "10 years"),
    ],
)
def test_human_duration(seconds: float, expected: str) -> None:
    assert human_duration(seconds) == expected


def test_human_duration_timedelta() -> None:
    assert human_duration(timedelta(minutes=5, seconds=30)) == "5 minutes"
    assert human_duration(timedelta(microseconds=999_999)) == "Less than a second"


def test_time_since() -> None:
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    assert time_since(now - timedelta(minutes=5), now) == "5 minutes ago"
    assert time_since(now - timedelta(days=3), now) == "3 days ago"
    assert time_since(now + timedelta(hours=1), now) == "Less than a second ago"
    # naive datetimes are UTC
    assert time_since(datetime(2024, 5, 1, 11, 0, 0), now) == "About an hour ago"
    assert time_since(now - timedelta(seconds=30), now.replace(tzinfo=None)) == "30 seconds ago"
    assert time_since(datetime.now(UTC) - timedelta(hours=3)) == "3 hours ago"


# --- tabwriter -------------------------------------------------------------------------------


def test_tabwrite_alignment() -> None:
    out = tabwrite(
        "REPOSITORY\tTAG\tIMAGE ID\nalpine\t3.19\tabc\ndocker.io/x/longname\tlatest\tdef\n"
    )
    assert out == (
        "REPOSITORY              TAG       IMAGE ID\n"
        "alpine                  3.19      abc\n"
        "docker.io/x/longname    latest    def\n"
    )


def test_tabwrite_no_rows_and_empty_cells() -> None:
    assert tabwrite("A\tBB\n") == "A    BB\n"
    # an empty column is still at least minwidth (4) wide
    assert tabwrite("\tX\n\ty\n") == "    X\n    y\n"


def test_tabwrite_column_blocks() -> None:
    text = "a\tb\tc\nlonger\tx\nno tabs line\nz\ty\n"
    assert tabwrite(text) == "a         b    c\nlonger    x\nno tabs line\nz    y\n"


def test_tabwrite_last_cell_unpadded_and_no_trailing_newline() -> None:
    assert tabwrite("a\tb") == "a    b"
    assert tabwrite("a\t\n") == "a    \n"
    assert tabwrite("") == ""


# --- Formatter -------------------------------------------------------------------------------

COLUMNS = [
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("ID", "IMAGE ID"),
    ("Size", "SIZE"),
]
FIELDS = ["Digest", "CreatedAt", "Labels", "Platforms", "Dangling", "Nothing", "Count"]
ROWS: list[dict[str, object]] = [
    {
        "Repository": "alpine",
        "Tag": "3.19",
        "ID": "0123456789ab",
        "Size": "7.8MB",
        "Digest": "sha256:aa",
        "CreatedAt": "2024-05-01 12:00:00 +0000 UTC",
        "Labels": {"b": "2", "a": "1"},
        "Platforms": ["linux/amd64", "linux/arm64"],
        "Dangling": False,
        "Nothing": None,
        "Count": 3,
    },
    {
        "Repository": "harbor.local/team/app",
        "Tag": "1.4",
        "ID": "ba9876543210",
        "Size": "87.65MB",
        "Digest": "sha256:bb",
        "CreatedAt": "2024-05-02 12:00:00 +0000 UTC",
        "Labels": {},
        "Platforms": [],
        "Dangling": True,
        "Nothing": None,
        "Count": 0,
    },
]

DEFAULT_TABLE = (
    "REPOSITORY               TAG     IMAGE ID        SIZE\n"
    "alpine                   3.19    0123456789ab    7.8MB\n"
    "harbor.local/team/app    1.4     ba9876543210    87.65MB\n"
)


def make(fmt: str | None, headers: dict[str, str] | None = None) -> Formatter:
    return Formatter(fmt, COLUMNS, fields=FIELDS, headers=headers)


@pytest.mark.parametrize("fmt", [None, "", "table", "  table  "])
def test_default_table(fmt: str | None) -> None:
    f = make(fmt)
    assert f.kind == "table"
    assert f.render(ROWS) == DEFAULT_TABLE


def test_default_table_is_the_tabwriter_over_the_columns() -> None:
    lines = [[h for _, h in COLUMNS], *([str(r[name]) for name, _ in COLUMNS] for r in ROWS)]
    assert make(None).render(ROWS) == tabwrite("".join("\t".join(c) + "\n" for c in lines))


def test_json_lines() -> None:
    f = make("json")
    assert f.kind == "json"
    out = f.render(ROWS)
    lines = out.splitlines()
    assert len(lines) == 2
    assert out.endswith("\n")
    first = json.loads(lines[0])
    assert first == ROWS[0]
    # row keys keep their order (a Go struct), compact separators
    assert lines[0].startswith('{"Repository":"alpine","Tag":"3.19","ID":"0123456789ab",')
    assert '"Labels":{"a":"1","b":"2"}' in lines[0]
    assert '"Dangling":false,"Nothing":null,"Count":3}' in lines[0]
    # identical to {{json .}}
    assert make("{{json .}}").render(ROWS) == out


def test_template_fields_and_literals() -> None:
    assert make("{{.Repository}}:{{.Tag}}").render(ROWS) == (
        "alpine:3.19\nharbor.local/team/app:1.4\n"
    )
    assert make("{{ .ID }} {{   .Tag}}").render(ROWS[:1]) == "0123456789ab 3.19\n"
    assert make("id={{.ID}}").kind == "template"


def test_template_escapes_are_raw_without_table() -> None:
    assert make(r"{{.Repository}}\t{{.Tag}}").render(ROWS) == (
        "alpine\t3.19\nharbor.local/team/app\t1.4\n"
    )
    assert make(r"{{.Repository}}\n{{.Tag}}").render(ROWS[:1]) == "alpine\n3.19\n"


def test_table_prefix_prints_aligned_header() -> None:
    out = make(r"table {{.ID}}\t{{.Repository}}:{{.Tag}}\t{{.Digest}}").render(ROWS)
    assert out == (
        "IMAGE ID        REPOSITORY:TAG               DIGEST\n"
        "0123456789ab    alpine:3.19                  sha256:aa\n"
        "ba9876543210    harbor.local/team/app:1.4    sha256:bb\n"
    )


def test_table_header_names() -> None:
    f = make(
        r"table {{.CreatedAt}}\t{{json .Labels}}\t{{.Size}}", headers={"CreatedAt": "CREATED AT"}
    )
    assert f.render([]) == "CREATED AT    LABELS    SIZE\n"
    assert f.header_of("Digest") == "DIGEST"
    assert f.header_of("ID") == "IMAGE ID"
    # {{json .}} has an empty header cell
    assert make(r"table {{.Tag}}\t{{json .}}").render([]) == "TAG    \n"


def test_json_field() -> None:
    assert make("{{json .Labels}}").render(ROWS[:1]) == '{"a":"1","b":"2"}\n'
    assert make("{{json .Repository}}").render(ROWS[:1]) == '"alpine"\n'
    assert make("{{ json .Platforms }}").render(ROWS) == '["linux/amd64","linux/arm64"]\n[]\n'
    assert make("{{json .Count}} {{json .Nothing}} {{json .Dangling}}").render(ROWS[:1]) == (
        "3 null false\n"
    )


def test_go_value_printing() -> None:
    f = make("{{.Labels}}|{{.Platforms}}|{{.Dangling}}|{{.Nothing}}|{{.Count}}")
    assert f.render(ROWS) == (
        "map[a:1 b:2]|[linux/amd64 linux/arm64]|false|<nil>|3\nmap[]|[]|true|<nil>|0\n"
    )


def test_zero_rows() -> None:
    assert make(None).render([]) == "REPOSITORY    TAG    IMAGE ID    SIZE\n"
    assert make("json").render([]) == ""
    assert make("{{.ID}}").render([]) == ""


def test_missing_known_field_renders_empty() -> None:
    assert make("[{{.Digest}}]").render([{"ID": "x"}]) == "[]\n"


def test_trim_markers_and_comments() -> None:
    assert make("a {{- .Tag }} b").render(ROWS[:1]) == "a3.19 b\n"
    assert make("a {{ .Tag -}} b").render(ROWS[:1]) == "a 3.19b\n"
    assert make("{{/* a comment */}}{{.Tag}}").render(ROWS[:1]) == "3.19\n"


def test_uses() -> None:
    assert make(None).uses("Size")
    assert not make(None).uses("Digest")
    assert make("{{.ID}}").uses("ID")
    assert not make("{{.ID}}").uses("Size")
    assert make("json").uses("Size")
    assert make("{{json .}}").uses("Digest")


# --- template errors: raised by the constructor, before any output --------------------------


def test_unknown_field() -> None:
    with pytest.raises(FormatError) as info:
        make("{{.Foo}}")
    msg = str(info.value)
    assert msg.startswith('template: unknown field "Foo" (known: Repository, Tag, ID, Size, Digest')
    with pytest.raises(FormatError, match='unknown field "Foo"'):
        make("table {{json .Foo}}")
    with pytest.raises(FormatError, match='unknown field "id"'):
        make("{{.id}}")  # field names are case-sensitive


@pytest.mark.parametrize(
    ("fmt", "fragment"),
    [
        ("{{.ID", "unclosed action"),
        ("table {{.ID}} {{", "unclosed action"),
        ("{{range .Labels}}{{.}}{{end}}", "unsupported action"),
        ("{{if .Dangling}}x{{end}}", "'if' is not supported"),
        ("{{upper .ID}}", "unsupported action"),
        ("{{.}}", "unsupported action"),
        ("{{}}", "missing value"),
        ("{{json}}", "unsupported action"),
        ("{{json .ID .Tag}}", "unsupported action"),
        ("{{json $x}}", "unsupported argument"),
        ("{{.Labels.foo}}", "unsupported argument"),
    ],
)
def test_bad_templates(fmt: str, fragment: str) -> None:
    with pytest.raises(FormatError, match=fragment):
        make(fmt)


# --- Go JSON / %v details --------------------------------------------------------------------


def test_go_json_details() -> None:
    assert go_json({"b": 1, "a": 2}) == '{"a":2,"b":1}'
    assert go_json({"b": 1, "a": 2}, keep_order=True) == '{"b":1,"a":2}'
    assert go_json({"x": {"b": 1, "a": 2}}, keep_order=True) == '{"x":{"a":2,"b":1}}'
    assert go_json("<é&>") == '"<é&>"'
    assert go_json("a\u2028b\nc") == '"a\\u2028b\\nc"'
    assert go_json([1.0, 0.5, 1e21, 1e-7, 123456789.0]) == "[1,0.5,1e+21,1e-7,123456789]"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.0, "1"),
        (1.5, "1.5"),
        (123456.0, "123456"),
        (1e6, "1e+06"),
        (1234567.0, "1.234567e+06"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (-2.5, "-2.5"),
        (0.0, "0"),
        ("s", "s"),
        (True, "true"),
        (None, "<nil>"),
        ({"k": [1, 2]}, "map[k:[1 2]]"),
    ],
)
def test_go_text(value: object, expected: str) -> None:
    assert go_text(value) == expected
