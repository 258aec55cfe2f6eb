"""jamspotter: find jam-causing material on recycling conveyor belts with Qwen-VL models."""

__version__ = "0.1.0"
