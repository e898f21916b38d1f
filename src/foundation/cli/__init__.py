"""The ``foundation`` command: a thin layer over the public API.

``foundation run module:root`` runs a user's supervision tree (Ctrl-C stops it in order);
``foundation lint PATH...`` checks the doctrine; ``foundation demo`` runs the demo.
"""

from foundation.cli.main import main as main

__all__ = ["main"]
