"""jamspotter.line (see docs/design.md)."""
