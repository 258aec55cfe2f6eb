"""jamspotter.train (see docs/design.md)."""
