"""jamspotter.formats (see DESIGN.md module map)."""
