"""Go's path rules (pyctl.registry.hosts.golang): vectors from Go's path and path/filepath docs and
behaviour, where Python's posixpath / fnmatch / glob would answer differently."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyctl.registry.hosts import golang as gopath


@pytest.mark.parametrize(
    ("path", "cleaned"),
    [
        ("", "."),
        ("//etc//containerd/", "/etc/containerd"),  # posixpath.normpath keeps a leading //
        ("/../x", "/x"),
        ("a/../../b", "../b"),
        ("./conf.d/./x.toml", "conf.d/x.toml"),
    ],
)
def test_clean(path: str, cleaned: str) -> None:
    assert gopath.clean(path) == cleaned


def test_join_and_dirname() -> None:
    assert gopath.join("/etc/containerd", "conf.d/*.toml") == "/etc/containerd/conf.d/*.toml"
    assert gopath.join(".", "x.toml") == "x.toml"
    assert gopath.join("", "") == ""
    assert gopath.dirname("/etc/containerd/config.toml") == "/etc/containerd"
    assert gopath.dirname("config.toml") == "."
    assert gopath.dirname("/config.toml") == "/"


@pytest.mark.parametrize(
    ("pattern", "name", "matched"),
    [
        ("*.toml", ".hidden.toml", True),  # Python's glob skips dotfiles; Go does not
        ("*.toml", "a/b.toml", False),
        ("?.toml", "a.toml", True),
        ("?.toml", "/.toml", False),
        ("[a-c]*", "b1", True),
        ("[^a-c]*", "b1", False),
        ("[^a-c]*", "d1", True),
        ("[!a]", "!", True),  # "!" is no negation in Go
        ("[!a]", "b", False),
        ("\\*.toml", "*.toml", True),
        ("\\*.toml", "a.toml", False),
        ("[\\]]", "]", True),
        ("[z-a]", "m", False),  # an empty range matches nothing
        ("a]b", "a]b", True),
        ("*", "", True),
    ],
)
def test_match(pattern: str, name: str, matched: bool) -> None:
    assert gopath.match(pattern, name) is matched


@pytest.mark.parametrize("pattern", ["[", "a[", "[]a]", "[a-]", "[-a]", "[^]", "a\\", "[a\\"])
def test_bad_patterns(pattern: str) -> None:
    with pytest.raises(gopath.BadPattern):
        gopath.match(pattern, "a")
    with pytest.raises(gopath.BadPattern):
        gopath.glob("/nonexistent/*" + pattern)


def test_glob_sorted_per_directory(tmp_path: Path) -> None:
    for rel in ["d2/b.toml", "d2/a.toml", "d1/z.toml", "d1/.y.toml", "d1/x.txt", "top.toml"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    (tmp_path / "d1" / "sub.toml").mkdir()  # directories match too
    root = str(tmp_path)
    assert gopath.glob(f"{root}/*/*.toml") == [
        f"{root}/d1/.y.toml",
        f"{root}/d1/sub.toml",
        f"{root}/d1/z.toml",
        f"{root}/d2/a.toml",
        f"{root}/d2/b.toml",
    ]
    assert gopath.glob(f"{root}/missing/*.toml") == []
    assert gopath.glob(f"{root}/top.toml/*") == []  # not a directory: nothing, no error
    # no meta characters: the path itself when it exists (lstat)
    assert gopath.glob(f"{root}/top.toml") == [f"{root}/top.toml"]
    assert gopath.glob(f"{root}/nope.toml") == []
