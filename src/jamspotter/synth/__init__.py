"""jamspotter.synth (see DESIGN.md module map)."""
