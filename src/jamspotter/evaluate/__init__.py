"""jamspotter.evaluate (see DESIGN.md module map)."""
