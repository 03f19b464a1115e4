"""Image configs' "created" as Go writes it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from pyctl.oci import parse_rfc3339


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("2024-05-01T10:00:00Z", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2024-05-01T10:00:00.123456789Z", datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)),
        ("2024-05-01T10:00:00.5+02:00", datetime(2024, 5, 1, 8, 0, 0, 500000, tzinfo=UTC)),
        (
            "2024-05-01 10:00:00-07:30",
            datetime(2024, 5, 1, 10, tzinfo=timezone(-timedelta(hours=7.5))),
        ),
        ("1970-01-01T00:00:00Z", datetime(1970, 1, 1, tzinfo=UTC)),  # reproducible builds
    ],
)
def test_parses_go_timestamps(text: str, want: datetime) -> None:
    assert parse_rfc3339(text) == want


@pytest.mark.parametrize(
    "text", ["", "yesterday", "2024-05-01", "2024-13-01T00:00:00Z", "0001-01-01T00:00:00Z"]
)
def test_unreadable_or_zero_is_none(text: str) -> None:
    assert parse_rfc3339(text) is None
