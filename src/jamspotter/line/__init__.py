"""jamspotter.line (see DESIGN.md module map)."""
