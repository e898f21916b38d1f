"""FND008 telemetry handler used to wait for completion."""

from __future__ import annotations

import pytest

from ._helpers import codes

POSITIVE = (
    pytest.param("telemetry.attach('id', ['e'], lambda *a: done.set())\n", id="lambda-set"),
    pytest.param("attach('id', ['e'], lambda *a: fut.set_result(a))\n", id="bare-attach"),
    pytest.param("t.attach_many('id', [['e']], lambda *a: q.put_nowait(a))\n", id="attach_many"),
    pytest.param("telemetry.attach('id', ['e'], lambda *a: gate.release())\n", id="release"),
    pytest.param("telemetry.attach('id', ['e'], done.set)\n", id="bound-set"),
    pytest.param("telemetry.attach('id', ['e'], queue.put_nowait)\n", id="bound-put_nowait"),
    pytest.param(
        "def on_stop(*a):\n    done.set()\ntelemetry.attach('id', ['e'], on_stop)\n",
        id="module-function",
    ),
    pytest.param(
        "async def test():\n    def on_stop(*a):\n        if a:\n            fut.set_result(a)\n"
        "    telemetry.attach('id', ['e'], handler=on_stop)\n",
        id="local-function-keyword",
    ),
    pytest.param(
        "async def test():\n    async def on_stop(*a):\n        await q.put(a)\n"
        "    telemetry.attach('id', ['e'], on_stop)\n",
        id="async-handler-put",
    ),
    pytest.param(
        "def on_stop(*a):\n    done.set()\nasync def test():\n"
        "    telemetry.attach('id', ['e'], on_stop)\n",
        id="enclosing-scope",
    ),
)

NEGATIVE = (
    pytest.param("telemetry.attach('id', ['e'], lambda *a: seen.append(a))\n", id="records"),
    pytest.param(
        "def count(*a):\n    counts['n'] += 1\ntelemetry.attach('id', ['e'], count)\n",
        id="counts",
    ),
    pytest.param("telemetry.attach('id', ['e'], handler)\n", id="unknown-handler"),
    pytest.param("telemetry.attach('id', ['e'], lambda *a: var.set(a))\n", id="contextvar-set"),
    pytest.param("job.on_done(done.set)\n", id="not-attach"),
    pytest.param("telemetry.detach('id')\n", id="detach"),
    pytest.param(
        "class H:\n    def on(self, *a):\n        self.done.set()\n"
        "def test():\n    telemetry.attach('id', ['e'], on)\n",
        id="method-is-not-in-scope",
    ),
)


@pytest.mark.parametrize("source", POSITIVE)
def test_fnd008_reports_a_handler_that_signals_a_waiter(source: str) -> None:
    assert codes(source) == ["FND008"]


@pytest.mark.parametrize("source", NEGATIVE)
def test_fnd008_accepts_handlers_that_only_observe(source: str) -> None:
    assert codes(source) == []
