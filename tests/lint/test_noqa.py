"""``# noqa`` comments silence findings on their own line only."""

from __future__ import annotations

import pytest

from foundation.lint.checker import suppressed_codes

from ._helpers import TIME_SLEEP, codes

ORPHAN = "loop.create_task(work())"


@pytest.mark.parametrize(
    "comment",
    [
        "# noqa: FND001",
        "# noqa:FND001",
        "# NOQA: fnd001",
        "# noqa: FND002, FND001",
        "# noqa: E501,FND001",
        "# noqa",
        "# type: ignore[misc]  # noqa: FND001",
        "# noqa: FND001 the supervisor adopts it on the next line",
    ],
)
def test_noqa_with_the_code_or_bare_silences_the_finding(comment: str) -> None:
    assert codes(f"{ORPHAN}  {comment}\n") == []


@pytest.mark.parametrize("comment", ["# noqa: FND002", "# noqa: FND0011", "# no qa", "# FND001"])
def test_noqa_for_other_codes_leaves_the_finding(comment: str) -> None:
    assert codes(f"{ORPHAN}  {comment}\n") == ["FND001"]


def test_noqa_on_another_line_does_not_silence() -> None:
    assert codes(f"# noqa: FND001\n{ORPHAN}\nx = 1  # noqa\n") == ["FND001"]


def test_noqa_silences_only_the_named_code_when_a_line_breaks_two_rules() -> None:
    source = f"import time\nasync def test_x():\n    {TIME_SLEEP}(1)  # noqa: FND004\n"
    assert codes(source, "tests/test_x.py") == ["FND005"]


def test_a_file_level_ruff_directive_is_not_a_noqa() -> None:
    assert suppressed_codes("# ruff: noqa") == frozenset()


def test_suppressed_codes_parses_bare_and_listed_forms() -> None:
    assert suppressed_codes("x  # noqa") == {"*"}
    assert suppressed_codes("x  # noqa: FND001, fnd004") == {"FND001", "FND004"}
    assert suppressed_codes("x  # nothing") == frozenset()
