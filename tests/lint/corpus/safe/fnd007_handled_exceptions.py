# ruff: noqa
"""FND007 safe: specific excepts, or broad ones that re-raise, log or use the error."""

import logging
import traceback

log = logging.getLogger(__name__)


def risky() -> None: ...


def specific() -> None:
    try:
        risky()
    except (KeyError, ValueError):
        pass


def reraises() -> None:
    try:
        risky()
    except BaseException:
        log.debug("cleaning up")
        raise


def wraps() -> None:
    try:
        risky()
    except Exception as err:
        raise RuntimeError("risky failed") from err


def logs() -> None:
    try:
        risky()
    except Exception:
        log.exception("risky failed")


def prints_the_traceback() -> None:
    try:
        risky()
    except Exception:
        traceback.print_exc()


def uses_the_error(errors: list[BaseException]) -> None:
    try:
        risky()
    except Exception as err:
        errors.append(err)
