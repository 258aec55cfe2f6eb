"""`python -m jamspotter.train sft ...`: the train commands alone (what torchrun / accelerate launch run)."""

import sys

import jamspotter.cli.train  # noqa: F401 - registers the commands on train_app
from jamspotter.cli.app import train_app


def main() -> None:
    """Run the command, then close the process group: a rank that exits with gloo threads still running
    can abort ("terminate called without an active exception") after its work is done."""
    try:
        train_app()
    finally:
        if "torch.distributed" in sys.modules:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                dist.destroy_process_group()


if __name__ == "__main__":
    main()
