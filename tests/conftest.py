"""Project-wide test configuration."""

pytest_plugins = ["pytester"]


def service_or_skip(name: str, env: str) -> str:
    """The URL of a test server from ``env``; skip without one, fail if CI requires it."""
    import os

    import pytest

    value = os.environ.get(env, "")
    if value:
        return value
    why = f"{env} is not set (no {name} server to test against)"
    if name in os.environ.get("FOUNDATION_REQUIRE_SERVICES", "").split(","):
        pytest.fail(f"{name} is required in this run (FOUNDATION_REQUIRE_SERVICES): {why}")
    raise pytest.skip.Exception(why)
