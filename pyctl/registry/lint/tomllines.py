"""Where a key or table is written in a TOML file: line numbers for messages.

``tomllib`` gives values, not positions. :class:`TomlLines` reads the text of a document that
``tomllib`` already accepted and notes, for every table header (``[a."b".c]``, ``[[a.b]]``) and
every ``key = value`` (dotted and quoted keys, and the keys of inline tables), the line where
that key path first appears. A path also counts as written where a longer one first appears:
``[plugin."x".registry]`` is where ``plugin`` and ``plugin."x"`` are written.

It is a small scanner, not a parser: it tracks only what tells a key from the inside of a
value (the four kinds of strings, comments, ``[]`` / ``{}`` nesting). Keys inside arrays (of
inline tables) are not noted; :meth:`TomlLines.line` answers None for what it did not note.
"""

from __future__ import annotations

import bisect
import contextlib
import tomllib

Path = tuple[str, ...]


class TomlLines:
    """The line (1-based) where each key path of ``text`` is first written."""

    def __init__(self, text: str) -> None:
        self._s = text
        self._i = 0
        self._starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]
        self._lines: dict[Path, int] = {}
        self._headers: list[tuple[Path, int]] = []
        # not valid TOML after all: keep what was found before the trouble
        with contextlib.suppress(IndexError, ValueError, tomllib.TOMLDecodeError):
            self._document()

    def line(self, *path: str) -> int | None:
        """The line where ``path`` is first written (a key, a table, or a prefix of either)."""
        return self._lines.get(path)

    def headers(self) -> list[tuple[Path, int]]:
        """The table headers (``[…]`` and ``[[…]]``), in file order, with their lines."""
        return list(self._headers)

    # --- scanning ---------------------------------------------------------------------------

    def _note(self, path: Path, line: int) -> None:
        for n in range(1, len(path) + 1):
            self._lines.setdefault(path[:n], line)

    def _line_at(self, i: int) -> int:
        return bisect.bisect_right(self._starts, i)

    def _document(self) -> None:
        s = self._s
        table: Path = ()
        while self._i < len(s):
            c = s[self._i]
            if c in " \t\r\n":
                self._i += 1
            elif c == "#":
                self._skip_comment()
            elif c == "[":
                line = self._line_at(self._i)
                double = s.startswith("[[", self._i)
                self._i += 2 if double else 1
                table = tuple(self._key())
                self._i += 2 if double else 1
                self._headers.append((table, line))
                self._note(table, line)
            else:
                self._key_value(table)

    def _key_value(self, table: Path) -> None:
        line = self._line_at(self._i)
        path = (*table, *self._key())
        self._note(path, line)
        self._i += 1  # "="
        self._skip_blank()
        if self._s[self._i] == "{":
            self._inline_table(path)
        else:
            self._skip_value()

    def _inline_table(self, path: Path) -> None:
        s = self._s
        self._i += 1  # "{"
        while True:
            self._skip_blank()
            if s[self._i] == "}":
                self._i += 1
                return
            if s[self._i] == ",":
                self._i += 1
                continue
            self._key_value(path)

    def _skip_blank(self) -> None:
        while self._s[self._i] in " \t":
            self._i += 1

    def _skip_comment(self) -> None:
        end = self._s.find("\n", self._i)
        self._i = len(self._s) if end < 0 else end

    def _key(self) -> list[str]:
        s = self._s
        parts: list[str] = []
        while True:
            self._skip_blank()
            c = s[self._i]
            if c == '"':
                start = self._i
                self._skip_basic_string()
                parts.append(str(tomllib.loads("k = " + s[start : self._i])["k"]))
            elif c == "'":
                end = s.index("'", self._i + 1)
                parts.append(s[self._i + 1 : end])
                self._i = end + 1
            else:
                start = self._i
                while s[self._i].isalnum() or s[self._i] in "_-":
                    self._i += 1
                if start == self._i:
                    raise ValueError(f"no key at offset {start}")
                parts.append(s[start : self._i])
            self._skip_blank()
            if s[self._i] != ".":
                return parts
            self._i += 1

    def _skip_basic_string(self) -> None:
        s = self._s
        self._i += 1
        while s[self._i] != '"':
            self._i += 2 if s[self._i] == "\\" else 1
        self._i += 1

    def _skip_multiline(self, quote: str) -> None:
        s = self._s
        self._i += 3
        while not s.startswith(quote * 3, self._i):
            self._i += 2 if quote == '"' and s[self._i] == "\\" else 1
        self._i += 3
        while self._i < len(s) and s[self._i] == quote:  # up to two quotes end the content
            self._i += 1

    def _skip_value(self) -> None:
        """To the end of the value: the newline after it, outside any string or nesting."""
        s = self._s
        depth = 0
        while self._i < len(s):
            c = s[self._i]
            if c in "\n}," and depth == 0:
                return  # "}" and "," end a value inside an inline table
            if c == "#":
                self._skip_comment()
            elif s.startswith('"""', self._i):
                self._skip_multiline('"')
            elif s.startswith("'''", self._i):
                self._skip_multiline("'")
            elif c == '"':
                self._skip_basic_string()
            elif c == "'":
                self._i = s.index("'", self._i + 1) + 1
            else:
                depth += (c in "[{") - (c in "]}")
                self._i += 1
