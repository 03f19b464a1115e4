"""Shell completion glue: click's bash, zsh and fish protocols, with bash taught about ``:``.

bash splits the words it hands a completion function at every character of
``COMP_WORDBREAKS``, ``:`` included, so ``harbor.local:8443/team/app:1`` arrives as five
words, and readline then replaces only the text after the last such character. pyctl's bash
script therefore sends the line up to the cursor (``COMP_LINE``) instead of the words, pyctl
splits it as a shell would, completes the whole word, and answers with only the part readline
will replace. zsh and fish do not split at ``:``; click's scripts serve them as they are.

Imported only to complete or to print a script (not at start-up).
"""

from __future__ import annotations

import os
from typing import Any

from click.shell_completion import (
    BashComplete,
    CompletionItem,
    add_completion_class,
    split_arg_string,
)

_SOURCE_BASH = """\
%(complete_func)s() {
    local IFS=$'\\n'
    local response

    # The line up to the cursor, not COMP_WORDS: bash splits words at ':' (COMP_WORDBREAKS)
    # and image names hold one or two (harbor.local:8443/team/app:1).
    response=$(env COMP_LINE="${COMP_LINE:0:COMP_POINT}" COMP_WORDBREAKS="$COMP_WORDBREAKS" \\
        %(complete_var)s=bash_complete $1)

    for completion in $response; do
        IFS=',' read type value <<< "$completion"

        if [[ $type == 'dir' ]]; then
            COMPREPLY=()
            compopt -o dirnames
        elif [[ $type == 'file' ]]; then
            COMPREPLY=()
            compopt -o default
        elif [[ $type == 'plain' ]]; then
            COMPREPLY+=($value)
        fi
    done

    return 0
}

%(complete_func)s_setup() {
    complete -o nosort -F %(complete_func)s %(prog_name)s
}

%(complete_func)s_setup;
"""


class LineBashComplete(BashComplete):
    """bash completion from ``COMP_LINE`` (see the module docstring); click's ``COMP_WORDS``
    protocol still works when no line is given."""

    source_template = _SOURCE_BASH

    def get_completion_args(self) -> tuple[list[str], str]:
        line = os.environ.get("COMP_LINE")
        if line is None:
            return super().get_completion_args()
        words = split_arg_string(line)
        incomplete = "" if not line or line[-1].isspace() or not words else words.pop()
        return words[1:], incomplete

    def get_completions(self, args: list[str], incomplete: str) -> list[CompletionItem]:
        items = super().get_completions(args, incomplete)
        if "COMP_LINE" not in os.environ:
            return items
        return trim_to_word_break(items, incomplete, os.environ.get("COMP_WORDBREAKS", ""))


def trim_to_word_break(
    items: list[CompletionItem], incomplete: str, word_breaks: str
) -> list[CompletionItem]:
    """The candidates as readline replaces them: without the part of ``incomplete`` up to
    and including its last word-break character (``harbor.local:8443/li`` ->
    ``8443/library/app:1``)."""
    breaks = set(word_breaks) - set(" \t\n")
    cut = max((incomplete.rfind(c) for c in breaks), default=-1) + 1
    if cut == 0:
        return items
    head = incomplete[:cut]
    out: list[CompletionItem] = []
    for item in items:
        value: Any = item.value
        if item.type == "plain" and isinstance(value, str):
            if not value.startswith(head):
                continue
            item = CompletionItem(value[cut:], type=item.type, help=item.help)
        out.append(item)
    return out


add_completion_class(LineBashComplete, "bash")
