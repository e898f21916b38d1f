"""The rule catalogue: codes, names, hints and definitions."""

from __future__ import annotations

from foundation.lint import RULES
from foundation.lint.rules import BY_CODE


def test_rules_are_fnd001_to_fnd008_in_order_with_unique_names() -> None:
    assert [rule.code for rule in RULES] == [f"FND00{n}" for n in range(1, 9)]
    assert len({rule.name for rule in RULES}) == len(RULES)
    assert list(BY_CODE) == [rule.code for rule in RULES]


def test_every_rule_is_defined_by_a_docstring_starting_with_its_code_and_has_a_hint() -> None:
    for rule in RULES:
        assert rule.describe().startswith(f"{rule.code} "), rule
        assert "Reported" in rule.describe(), rule
        assert "Not reported" in rule.describe(), rule
        assert len(rule.hint) > 20, rule


def test_only_fnd005_is_restricted_to_test_files() -> None:
    assert [rule.code for rule in RULES if rule.tests_only] == ["FND005"]
