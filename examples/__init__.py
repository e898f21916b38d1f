"""Examples for the foundation command line."""
