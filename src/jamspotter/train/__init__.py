"""jamspotter.train (see DESIGN.md module map)."""
