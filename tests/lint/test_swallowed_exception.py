"""FND007 broad except that swallows the error."""

from __future__ import annotations

import pytest

from ._helpers import codes, lint


def handler(clause: str, body: str) -> str:
    return f"try:\n    risky()\n{clause}:\n    {body}\n"


POSITIVE = (
    pytest.param("except", "pass", id="bare-except"),
    pytest.param("except Exception", "pass", id="Exception"),
    pytest.param("except BaseException", "return None", id="BaseException"),
    pytest.param("except (OSError, Exception)", "pass", id="in-a-tuple"),
    pytest.param("except builtins.Exception", "pass", id="builtins.Exception"),
    pytest.param("except Exception as err", "cleanup()", id="unused-name"),
    pytest.param("except Exception", "print('failed')", id="print-is-not-logging"),
    pytest.param("except Exception", "result = None", id="fallback-value"),
)

NEGATIVE = (
    pytest.param("except KeyError", "pass", id="specific"),
    pytest.param("except (KeyError, ValueError)", "pass", id="specific-tuple"),
    pytest.param("except Exception", "raise", id="re-raise"),
    pytest.param("except BaseException", "cleanup()\n    raise", id="cleanup-and-re-raise"),
    pytest.param("except Exception as err", "raise Wrapped() from err", id="wrap"),
    pytest.param("except Exception", "log.exception('failed')", id="log.exception"),
    pytest.param("except Exception", "logger.warning('failed')", id="logger.warning"),
    pytest.param("except Exception", "self.log.error('failed')", id="log.error"),
    pytest.param("except Exception", "logging.log(40, 'failed')", id="logging.log"),
    pytest.param("except Exception", "traceback.print_exc()", id="print_exc"),
    pytest.param("except Exception as err", "errors.append(err)", id="uses-error"),
    pytest.param("except Exception as err", "return Failed(err)", id="returns-error"),
    pytest.param("except Exception", "if strict:\n        raise", id="conditional-raise"),
)


@pytest.mark.parametrize(("clause", "body"), POSITIVE)
def test_fnd007_reports_a_broad_handler_that_swallows_the_error(clause: str, body: str) -> None:
    assert codes(handler(clause, body)) == ["FND007"]


@pytest.mark.parametrize(("clause", "body"), NEGATIVE)
def test_fnd007_accepts_specific_handlers_and_ones_that_raise_log_or_use_it(
    clause: str, body: str
) -> None:
    assert codes(handler(clause, body)) == []


def test_fnd007_reports_at_the_except_line() -> None:
    (finding,) = lint(handler("except Exception", "pass"))
    assert (finding.line, finding.col) == (3, 1)
