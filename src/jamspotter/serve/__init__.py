"""jamspotter.serve (see DESIGN.md module map)."""
