"""jamspotter.edge (see DESIGN.md module map)."""
