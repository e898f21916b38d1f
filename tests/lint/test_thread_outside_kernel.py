"""FND002 thread or executor spawned outside the kernel."""

from __future__ import annotations

import pytest

from ._helpers import codes

POSITIVE = (
    pytest.param("import threading\nthreading.Thread(target=f).start()\n", id="threading.Thread"),
    pytest.param("from threading import Thread\nThread(target=f)\n", id="imported-Thread"),
    pytest.param("import threading as th\nth.Timer(1, f)\n", id="threading.Timer-alias"),
    pytest.param("loop.run_in_executor(None, f)\n", id="run_in_executor"),
    pytest.param(
        "import asyncio\nasync def g():\n    await asyncio.to_thread(f)\n", id="asyncio.to_thread"
    ),
    pytest.param(
        "from concurrent.futures import ThreadPoolExecutor\nwith ThreadPoolExecutor() as ex:\n"
        "    pass\n",
        id="ThreadPoolExecutor",
    ),
    pytest.param(
        "import concurrent.futures\nconcurrent.futures.ProcessPoolExecutor()\n",
        id="ProcessPoolExecutor",
    ),
    pytest.param("import _thread\n_thread.start_new_thread(f, ())\n", id="_thread"),
    pytest.param("import multiprocessing\nmultiprocessing.Process(target=f)\n", id="Process"),
    pytest.param("from multiprocessing import Pool\nPool(4)\n", id="multiprocessing.Pool"),
)

NEGATIVE = (
    pytest.param("class Thread:\n    pass\nThread()\n", id="local-class-named-Thread"),
    pytest.param("Thread(title='general')\n", id="unimported-Thread"),
    pytest.param("import threading\nlock = threading.Lock()\n", id="threading.Lock"),
    pytest.param("async def g(tasks):\n    await tasks.run_sync(f)\n", id="run_sync"),
    pytest.param("import asyncio\nasyncio.run(main())\n", id="asyncio.run"),
)


@pytest.mark.parametrize("source", POSITIVE)
def test_fnd002_reports_a_thread_process_or_executor_started(source: str) -> None:
    assert codes(source) == ["FND002"]


@pytest.mark.parametrize("source", NEGATIVE)
def test_fnd002_accepts_look_alike_names_and_supervised_work(source: str) -> None:
    assert codes(source) == []
