"""jamspotter.serve (see docs/design.md)."""
