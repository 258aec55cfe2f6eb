"""jamspotter.infer (see DESIGN.md module map)."""
