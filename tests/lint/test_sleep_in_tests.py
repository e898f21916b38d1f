"""FND005 sleep or wall-clock polling in tests."""

from __future__ import annotations

import pytest

from ._helpers import ASYNCIO_SLEEP, LIBRARY_PATH, TEST_PATH, TIME_SLEEP, codes

POSITIVE = (
    pytest.param("import time\ntime.sleep(0.1)\n", id="time.sleep"),
    pytest.param(f"import asyncio\nasync def t():\n    await {ASYNCIO_SLEEP}(1)\n", id="asyncio"),
    pytest.param(f"import asyncio\nasync def t(d):\n    await {ASYNCIO_SLEEP}(d)\n", id="variable"),
    pytest.param(f"import asyncio\nasync def t():\n    await {ASYNCIO_SLEEP}(delay=2)\n", id="kw"),
    pytest.param("from asyncio import sleep\nasync def t():\n    await sleep(1)\n", id="import"),
    pytest.param("import trio\nasync def t():\n    await trio.sleep(1)\n", id="trio"),
    pytest.param("import anyio\nasync def t():\n    await anyio.sleep(0.1)\n", id="anyio"),
    pytest.param(f"import asyncio\nasync def t():\n    await {ASYNCIO_SLEEP}(1e-3)\n", id="tiny"),
    pytest.param(
        "import time\nwhile time.monotonic() < deadline:\n    pass\n", id="monotonic-in-test"
    ),
    pytest.param(
        "import time\nwhile True:\n    if time.time() > limit:\n        break\n", id="time-in-body"
    ),
    pytest.param(
        "from time import perf_counter\nwhile not done:\n    now = perf_counter()\n",
        id="perf_counter-imported",
    ),
    pytest.param("while loop.time() < end:\n    pass\n", id="loop.time"),
    pytest.param("while self._loop.time() < end:\n    pass\n", id="attribute-loop.time"),
    pytest.param(
        "import asyncio\nwhile asyncio.get_running_loop().time() < end:\n    pass\n",
        id="get_running_loop().time",
    ),
)

NEGATIVE = (
    pytest.param("import asyncio\nasync def t():\n    await asyncio.sleep(0)\n", id="sleep-0"),
    pytest.param("import asyncio\nasync def t():\n    await asyncio.sleep(0.0)\n", id="sleep-0.0"),
    pytest.param("import time\nstart = time.monotonic()\n", id="clock-read-once"),
    pytest.param(
        "import time\nwhile items:\n    def stamp():\n        return time.time()\n",
        id="clock-in-function-defined-in-loop",
    ),
    pytest.param("while pending:\n    pending.pop()\n", id="loop-without-clock"),
    pytest.param("while not done:\n    t = event.time()\n", id="time-method-of-non-loop"),
    pytest.param("async def t(runtime):\n    await wait_until(lambda: ready)\n", id="wait_until"),
)


@pytest.mark.parametrize("source", POSITIVE)
def test_fnd005_reports_sleeping_or_clock_polling_in_a_test(source: str) -> None:
    assert codes(source, TEST_PATH) == ["FND005"]


@pytest.mark.parametrize("source", NEGATIVE)
def test_fnd005_accepts_yielding_and_waiting_on_conditions(source: str) -> None:
    assert codes(source, TEST_PATH) == []


@pytest.mark.parametrize("source", POSITIVE)
def test_fnd005_does_not_apply_outside_test_files(source: str) -> None:
    assert "FND005" not in codes(source, LIBRARY_PATH)


@pytest.mark.parametrize(
    "path",
    ["tests/test_x.py", "tests/kernel/helpers.py", "src/pkg/test_thing.py", "pkg/conftest.py"],
)
def test_fnd005_applies_to_the_default_test_paths(path: str) -> None:
    assert codes(f"import time\n{TIME_SLEEP}(1)\n", path) == ["FND005"]


def test_fnd005_reports_a_clock_read_once_in_nested_while_loops() -> None:
    source = "import time\nwhile a:\n    while time.time() < b:\n        pass\n"
    assert codes(source, TEST_PATH) == ["FND005"]
