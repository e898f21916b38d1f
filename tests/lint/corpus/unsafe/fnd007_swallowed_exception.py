# ruff: noqa
"""FND007: broad excepts that swallow the error."""

import builtins


def risky() -> None: ...


def swallow_everything() -> None:
    try:
        risky()
    except:  # expect: FND007
        pass


def swallow_exception() -> int | None:
    try:
        risky()
    except Exception:  # expect: FND007
        return None
    return 1


def swallow_base_exception() -> None:
    try:
        risky()
    except BaseException:  # expect: FND007
        pass


def swallow_in_a_tuple() -> None:
    try:
        risky()
    except (ValueError, Exception):  # expect: FND007
        print("something went wrong")


def swallow_with_an_unused_name() -> None:
    try:
        risky()
    except builtins.Exception as err:  # expect: FND007
        risky()


async def swallow_in_a_loop() -> None:
    while True:
        try:
            risky()
        except Exception:  # expect: FND007
            continue
