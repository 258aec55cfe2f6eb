"""`python -m jamspotter.train sft ...`: the train commands alone (what torchrun / accelerate launch run)."""

import jamspotter.cli.train  # noqa: F401 - registers the commands on train_app
from jamspotter.cli.app import train_app

if __name__ == "__main__":
    train_app()
