"""jamspotter.edge (see docs/design.md)."""
