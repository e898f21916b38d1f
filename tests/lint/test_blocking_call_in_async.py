"""FND004 blocking call directly inside an ``async def`` body."""

from __future__ import annotations

import pytest

from ._helpers import ASYNCIO_SLEEP, TEST_PATH, TIME_SLEEP, codes

POSITIVE = (
    pytest.param("import time", f"{TIME_SLEEP}(1)", id="time.sleep"),
    pytest.param("import time as t", "t.sleep(1)", id="module-alias"),
    pytest.param("from time import sleep", "sleep(1)", id="imported-name"),
    pytest.param("from time import sleep as snooze", "snooze(1)", id="renamed-import"),
    pytest.param("import requests", "requests.get(url)", id="requests.get"),
    pytest.param("import requests", "requests.request('GET', url)", id="requests.request"),
    pytest.param("from requests import post", "post(url)", id="requests.post-imported"),
    pytest.param("import urllib.request", "urllib.request.urlopen(url)", id="urlopen"),
    pytest.param("import subprocess", "subprocess.run(['ls'])", id="subprocess.run"),
    pytest.param("import subprocess", "subprocess.call(['ls'])", id="subprocess.call"),
    pytest.param("import subprocess", "subprocess.check_call(['ls'])", id="check_call"),
    pytest.param("import subprocess", "subprocess.check_output(['ls'])", id="check_output"),
    pytest.param("import subprocess", "subprocess.getoutput('ls')", id="getoutput"),
    pytest.param("import subprocess", "subprocess.getstatusoutput('ls')", id="getstatusoutput"),
    pytest.param("import os", "os.system('ls')", id="os.system"),
    pytest.param("import os", "os.popen('ls')", id="os.popen"),
    pytest.param("import os", "os.wait()", id="os.wait"),
    pytest.param("import socket", "socket.create_connection(addr)", id="create_connection"),
    pytest.param("import httpx", "httpx.get(url)", id="httpx.get"),
    pytest.param("import httpx", "httpx.post(url)", id="httpx.post"),
    pytest.param("import httpx", "httpx.request('GET', url)", id="httpx.request"),
    pytest.param("", "input('name? ')", id="input"),
    pytest.param("import time", f"[{TIME_SLEEP}(1) for _ in range(3)]", id="in-comprehension"),
    pytest.param("import time", f"if ready:\n        {TIME_SLEEP}(1)", id="in-if-block"),
)

NEGATIVE = (
    pytest.param("import asyncio", f"await {ASYNCIO_SLEEP}(1)", id="asyncio.sleep"),
    pytest.param("import httpx", "await httpx.AsyncClient().get(url)", id="AsyncClient"),
    pytest.param("import requests", "session = requests.Session()", id="requests.Session"),
    pytest.param("import requests", "raise requests.HTTPError()", id="requests-exception"),
    pytest.param("import time", f"def later():\n        {TIME_SLEEP}(1)", id="nested-def"),
    pytest.param("import time", f"cb = lambda: {TIME_SLEEP}(1)", id="lambda"),
    pytest.param("import time", "started = time.monotonic()", id="clock-read"),
    pytest.param("", "requests.append(1)", id="unimported-requests"),
    pytest.param("import requests", "requests = []\n    requests.append(1)", id="shadowed"),
    pytest.param("def input(prompt): ...", "input('x')", id="module-defined-input"),
    pytest.param(
        "import subprocess", "await tasks.run_sync(subprocess.run, ['ls'])", id="run_sync"
    ),
)


def coroutine(imports: str, body: str) -> str:
    return f"{imports}\nasync def handler(url, addr, ready, tasks):\n    {body}\n"


@pytest.mark.parametrize(("imports", "body"), POSITIVE)
def test_fnd004_reports_a_blocking_call_in_a_coroutine(imports: str, body: str) -> None:
    assert codes(coroutine(imports, body)) == ["FND004"]


@pytest.mark.parametrize(("imports", "body"), NEGATIVE)
def test_fnd004_accepts_async_io_and_blocking_calls_outside_the_coroutine(
    imports: str, body: str
) -> None:
    assert codes(coroutine(imports, body)) == []


def test_fnd004_ignores_blocking_calls_in_plain_functions() -> None:
    assert codes(f"import time\ndef wait():\n    {TIME_SLEEP}(1)\n") == []


def test_fnd004_checks_a_coroutine_nested_in_a_plain_function() -> None:
    source = f"import time\ndef outer():\n    async def inner():\n        {TIME_SLEEP}(1)\n"
    assert codes(source) == ["FND004"]


def test_fnd004_and_fnd005_both_report_time_sleep_in_a_coroutine_of_a_test() -> None:
    source = f"import time\nasync def test_x():\n    {TIME_SLEEP}(1)\n"
    assert codes(source, TEST_PATH) == ["FND004", "FND005"]
