"""jamspotter.models (see DESIGN.md module map)."""
