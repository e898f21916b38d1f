"""FND001 orphan task: a created task whose result is dropped."""

from __future__ import annotations

import pytest

from ._helpers import codes

POSITIVE = (
    pytest.param("import asyncio\nasyncio.create_task(work())\n", id="asyncio.create_task"),
    pytest.param("import asyncio\nasyncio.ensure_future(work())\n", id="asyncio.ensure_future"),
    pytest.param("from asyncio import create_task\ncreate_task(work())\n", id="imported-name"),
    pytest.param("import asyncio as aio\naio.create_task(work())\n", id="module-alias"),
    pytest.param("loop.create_task(work())\n", id="loop.create_task"),
    pytest.param("self.loop.create_task(work())\n", id="attribute-receiver"),
    pytest.param("_ = loop.create_task(work())\n", id="assigned-to-underscore"),
    pytest.param("_: object = loop.create_task(work())\n", id="annotated-underscore"),
    pytest.param(
        "import asyncio\nasync def f():\n    asyncio.get_running_loop().create_task(work())\n",
        id="call-receiver-in-coroutine",
    ),
)

NEGATIVE = (
    pytest.param("import asyncio\ntask = asyncio.create_task(work())\n", id="kept"),
    pytest.param(
        "import asyncio\nasync def f():\n    await asyncio.create_task(w())\n", id="awaited"
    ),
    pytest.param("tasks.add(loop.create_task(work()))\n", id="stored"),
    pytest.param("def f():\n    return [loop.create_task(w) for w in works]\n", id="collected"),
    pytest.param(
        "import asyncio\nasync def f():\n"
        "    async with asyncio.TaskGroup() as tg:\n        tg.create_task(work())\n",
        id="task-group",
    ),
    pytest.param(
        "from asyncio import TaskGroup\nclass S:\n    def __init__(self):\n"
        "        self.group = TaskGroup()\n    def go(self):\n"
        "        self.group.create_task(work())\n",
        id="task-group-attribute",
    ),
    pytest.param("create_task(work())\n", id="unrelated-function"),
    pytest.param("registry.create_tasks()\n", id="similar-method-name"),
)


@pytest.mark.parametrize("source", POSITIVE)
def test_fnd001_reports_a_task_whose_result_is_dropped(source: str) -> None:
    assert codes(source) == ["FND001"]


@pytest.mark.parametrize("source", NEGATIVE)
def test_fnd001_accepts_a_task_that_is_kept_awaited_or_owned(source: str) -> None:
    assert codes(source) == []
