"""``python -m foundation.lint PATH...``: the same as ``foundation lint PATH...``."""

from foundation.lint.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    raise SystemExit(main())
