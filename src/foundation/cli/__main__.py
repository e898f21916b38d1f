"""``python -m foundation.cli``: the ``foundation`` command."""

from foundation.cli.main import main

main()
