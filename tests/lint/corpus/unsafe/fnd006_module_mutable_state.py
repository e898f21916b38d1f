# ruff: noqa
"""FND006: mutable runtime state kept at module level."""

import collections
import weakref
from collections import Counter, OrderedDict, defaultdict, deque
from typing import Any

REGISTRY = {}  # expect: FND006
PENDING: list[int] = []  # expect: FND006
SEEN = set()  # expect: FND006
BY_NAME = defaultdict(list)  # expect: FND006
QUEUE = collections.deque()  # expect: FND006
ORDER = OrderedDict()  # expect: FND006
HITS = Counter()  # expect: FND006
RING = deque(maxlen=10)  # expect: FND006
BUFFER = bytearray(16)  # expect: FND006
CACHE = weakref.WeakValueDictionary()  # expect: FND006
LIVE = weakref.WeakSet()  # expect: FND006
SQUARES = {n: n * n for n in range(4)}  # expect: FND006
ITEMS = [n for n in range(4)]  # expect: FND006
A, B = [], {}  # expect: FND006, FND006

try:
    import json
except ImportError:
    pass
else:
    HANDLERS: dict[str, Any] = dict()  # expect: FND006

counter = 0


def bump() -> int:
    global counter  # expect: FND006
    counter += 1
    return counter
