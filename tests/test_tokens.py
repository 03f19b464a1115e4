"""Token scopes and token server answers."""

from __future__ import annotations

import json

import pytest

from pyctl.errors import PyctlError
from pyctl.registry.tokens import Token, merge_scopes, parse_token_response, repository_scope

# ---------------------------------------------------------------------------------------------
# Scopes
# ---------------------------------------------------------------------------------------------


def test_scopes() -> None:
    assert repository_scope("library/ubuntu", "pull") == "repository:library/ubuntu:pull"
    assert repository_scope("a/b", ["pull", "push"]) == "repository:a/b:pull,push"
    with pytest.raises(PyctlError):
        repository_scope("", "pull")
    # containerd's TestGetTokenScopes: exact-string dedup, sorted
    assert merge_scopes(["repository:foo/bar:pull"], ["repository:foo/bar:pull,push"]) == (
        "repository:foo/bar:pull",
        "repository:foo/bar:pull,push",
    )
    assert merge_scopes(
        ["repository:b:pull", "repository:a:pull"],
        ("repository:a:pull",),
        ["repository:c:pull repository:a:push", ""],
    ) == ("repository:a:pull", "repository:a:push", "repository:b:pull", "repository:c:pull")
    assert merge_scopes() == ()
    assert merge_scopes(["b", "a"]) == ("a", "b")


# ---------------------------------------------------------------------------------------------
# Token responses
# ---------------------------------------------------------------------------------------------


def test_token_response() -> None:
    tok = parse_token_response(b'{"token": "t1", "expires_in": 300}', 1000.0)
    assert tok == Token("t1", 1300.0, None)
    tok = parse_token_response(
        b'{"token": "old", "access_token": "new", "refresh_token": "r",'
        b' "issued_at": "2020-01-01T00:00:00Z"}',
        1000.0,
    )
    assert (tok.token, tok.expires_at, tok.refresh_token) == ("new", 1060.0, "r")
    assert parse_token_response(b'{"access_token": "a", "expires_in": 0}', 5).expires_at == 65
    assert parse_token_response(b'{"token": "a", "expires_in": -5}', 5).expires_at == 65
    assert parse_token_response(b'{"token": "a", "expires_in": "300"}', 5).expires_at == 65
    assert parse_token_response(b'{"token": "a", "expires_in": true}', 5).expires_at == 65
    assert parse_token_response(b'{"token": "a", "expires_in": 1e999}', 5).expires_at == 65
    assert parse_token_response(b'{"token": "a", "expires_in": 2.5}', 5).expires_at == 7.5
    assert parse_token_response(b'{"token": "", "access_token": "a"}', 0).token == "a"
    assert parse_token_response(b'{"token": "t", "access_token": ""}', 0).token == "t"
    assert parse_token_response(b'\xef\xbb\xbf{"token": "bom"}', 0).token == "bom"


@pytest.mark.parametrize(
    "body", [b"{}", b'{"token": ""}', b'{"token": 5}', b'{"access_token": null}']
)
def test_token_response_without_token(body: bytes) -> None:
    with pytest.raises(PyctlError) as info:
        parse_token_response(body, 0)
    assert str(info.value) == "authorization server did not include a token in the response"


@pytest.mark.parametrize("body", [b"", b"<html>", b"[1]", b"\xff", b"null", b"[" * 100000])
def test_token_response_invalid(body: bytes) -> None:
    with pytest.raises(PyctlError, match="invalid token response"):
        parse_token_response(body, 0)


@pytest.mark.parametrize("token", ["secret\r\nX-Injected: 1", "secret\x00", "s\u00e9cret"])
def test_a_token_that_cannot_be_a_header_is_refused_unseen(token: str) -> None:
    with pytest.raises(PyctlError) as info:
        parse_token_response(json.dumps({"token": token}).encode(), 0)
    assert str(info.value) == (
        "authorization server returned a token with control or non-ASCII characters"
    )


def test_token_repr_and_validity() -> None:
    tok = Token("very-secret-token", 100.0, "refresh-secret")
    assert "very-secret-token" not in repr(tok) and "refresh-secret" not in str(tok)
    assert tok.valid_at(50) and not tok.valid_at(100) and not tok.valid_at(96, margin=5)
    assert Token("t", None).valid_at(1e12)
