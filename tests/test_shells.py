"""bash completion answers only the part of a word readline replaces (after its last
COMP_WORDBREAKS character), so names with ``host:port`` and ``:tag`` complete."""

from __future__ import annotations

import pytest
from click.shell_completion import CompletionItem

from pyctl.cli.shells import trim_to_word_break

BASH_BREAKS = " \t\n\"'><=;|&(:"
NAMES = ["harbor.local:8443/library/app:1", "harbor.local:8443/team/web:1.0", "busybox:latest"]


@pytest.mark.parametrize(
    ("incomplete", "want"),
    [
        ("harbor.local:8443/t", ["8443/team/web:1.0"]),
        ("harbor.local:8443/library/app:", ["1"]),
        ("harbor.local:", ["8443/library/app:1", "8443/team/web:1.0"]),
        ("harbor.lo", NAMES[:2]),  # no break yet: whole names
        ("busy", ["busybox:latest"]),
        ("", NAMES),
    ],
)
def test_trim_to_word_break(incomplete: str, want: list[str]) -> None:
    items = [CompletionItem(n) for n in NAMES if n.startswith(incomplete)]
    got = trim_to_word_break(items, incomplete, BASH_BREAKS)
    assert [i.value for i in got] == want


def test_without_colon_in_word_breaks_nothing_is_cut() -> None:
    items = [CompletionItem(NAMES[0])]
    assert trim_to_word_break(items, "harbor.local:8443/l", " \t\n") == items


def test_file_and_dir_items_pass_through() -> None:
    item = CompletionItem("", type="file")
    assert trim_to_word_break([item], "out:put", BASH_BREAKS) == [item]
