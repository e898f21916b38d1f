"""FND003 raw put into another process's mailbox."""

from __future__ import annotations

import pytest

from ._helpers import codes

POSITIVE = (
    pytest.param("proc.mailbox.append(msg)\n", id="append"),
    pytest.param("proc.mailbox.appendleft(msg)\n", id="appendleft"),
    pytest.param("proc.mailbox.extend(msgs)\n", id="extend"),
    pytest.param("proc.mailbox.insert(0, msg)\n", id="insert"),
    pytest.param("self.mailbox.put_nowait(msg)\n", id="put_nowait-own-mailbox"),
    pytest.param("runtime.process(pid).deliver(msg)\n", id="deliver"),
    pytest.param("proc.deliver_system(msg)\n", id="deliver_system"),
    pytest.param("alive = pid._proc is not None\n", id="_proc-read"),
    pytest.param("self.peer._proc = None\n", id="_proc-write-through-self-attribute"),
)

NEGATIVE = (
    pytest.param("send(pid, msg)\ncast(pid, msg)\n", id="send-cast"),
    pytest.param("async def f():\n    await call(pid, msg)\n", id="call"),
    pytest.param("n = len(proc.mailbox)\n", id="mailbox-length"),
    pytest.param("inbox.append(msg)\nself.messages.append(msg)\n", id="other-lists"),
    pytest.param("self._proc = proc\nreturn_code = self._proc.returncode\n", id="own-_proc"),
    pytest.param("cls._proc = None\n", id="class-own-_proc"),
    pytest.param("proc.mailbox.popleft()\n", id="reading-the-mailbox"),
)


@pytest.mark.parametrize("source", POSITIVE)
def test_fnd003_reports_a_message_put_around_send_cast_call(source: str) -> None:
    assert codes(source) == ["FND003"]


@pytest.mark.parametrize("source", NEGATIVE)
def test_fnd003_accepts_the_messaging_api_and_own_attributes(source: str) -> None:
    assert codes(source) == []


def test_fnd003_reports_both_the_proc_access_and_the_delivery_on_one_line() -> None:
    assert codes("pid._proc.deliver(msg)\n") == ["FND003", "FND003"]
