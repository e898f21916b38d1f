"""FND006 module-level mutable runtime state."""

from __future__ import annotations

import pytest

from ._helpers import codes

POSITIVE = (
    pytest.param("REGISTRY = {}\n", id="dict-literal"),
    pytest.param("PENDING = []\n", id="list-literal"),
    pytest.param("SEEN = {1, 2}\n", id="set-literal"),
    pytest.param("SQUARES = {n: n for n in range(3)}\n", id="dict-comprehension"),
    pytest.param("ITEMS = [n for n in range(3)]\n", id="list-comprehension"),
    pytest.param("KEYS = {n for n in range(3)}\n", id="set-comprehension"),
    pytest.param("CACHE: dict[str, int] = {}\n", id="annotated"),
    pytest.param("SEEN = set()\n", id="set-call"),
    pytest.param("ITEMS = list(range(3))\n", id="list-call"),
    pytest.param("OPTIONS = dict(a=1)\n", id="dict-call"),
    pytest.param("BUFFER = bytearray(4)\n", id="bytearray"),
    pytest.param("from collections import defaultdict\nBY = defaultdict(list)\n", id="defaultdict"),
    pytest.param("import collections\nORDER = collections.OrderedDict()\n", id="OrderedDict"),
    pytest.param("from collections import deque\nQUEUE = deque()\n", id="deque"),
    pytest.param("from collections import Counter\nHITS = Counter()\n", id="Counter"),
    pytest.param("import weakref\nLIVE = weakref.WeakValueDictionary()\n", id="WeakValueDict"),
    pytest.param("import weakref\nOWNERS = weakref.WeakKeyDictionary()\n", id="WeakKeyDict"),
    pytest.param("from weakref import WeakSet\nALL = WeakSet()\n", id="WeakSet"),
    pytest.param("if DEBUG:\n    TRACE = []\n", id="under-module-if"),
    pytest.param("try:\n    import x\nexcept ImportError:\n    MISSING = []\n", id="under-try"),
    pytest.param("count = 0\ndef bump():\n    global count\n    count += 1\n", id="global"),
    pytest.param("class C:\n    def m(self):\n        global state\n", id="global-in-method"),
)

NEGATIVE = (
    pytest.param("__all__ = ['a', 'b']\n", id="__all__"),
    pytest.param("pytest_plugins = ['pytester']\npytestmark = []\n", id="pytest-declarations"),
    pytest.param("LIMITS = (1, 2)\nNAMES = frozenset({'a'})\n", id="immutable"),
    pytest.param("from typing import Final\nALLOWED: Final = ['ls']\n", id="Final"),
    pytest.param("import typing\nROUTES: typing.Final[dict[str, int]] = {}\n", id="typing.Final"),
    pytest.param("ROUTES: 'Final[dict[str, int]]' = {}\n", id="string-Final"),
    pytest.param("from types import MappingProxyType\nD = MappingProxyType({})\n", id="proxy"),
    pytest.param("def f():\n    cache = {}\n    return cache\n", id="function-local"),
    pytest.param("class C:\n    registry = {}\n", id="class-attribute"),
    pytest.param("COUNT = 0\nNAME = 'x'\n", id="immutable-scalars"),
    pytest.param("settings.items = []\n", id="attribute-target"),
    pytest.param("X: list[int]\n", id="annotation-only"),
)


@pytest.mark.parametrize("source", POSITIVE)
def test_fnd006_reports_mutable_module_state_and_global_statements(source: str) -> None:
    assert codes(source) == ["FND006"]


@pytest.mark.parametrize("source", NEGATIVE)
def test_fnd006_accepts_constants_declarations_and_local_state(source: str) -> None:
    assert codes(source) == []


def test_fnd006_reports_each_mutable_name_of_a_tuple_assignment() -> None:
    assert codes("A, B, C = [], {}, 0\n") == ["FND006", "FND006"]


def test_fnd006_reports_every_target_of_a_chained_assignment() -> None:
    assert codes("A = B = []\n") == ["FND006", "FND006"]
