"""The command line of `python utils/gpt_train.py`: parse the options, plan or train, one sentence on bad input."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from typing import Any

from utils.errors import UserInputError
from utils.options import TrainOptions, add_arguments, from_namespace
from utils.training.distributed import Distributed
from utils.training.guard import TrainingDiverged
from utils.training.plan import preview_start
from utils.training.run import train_gpt
from utils.training.selfcheck import run_selfcheck


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python utils/gpt_train.py",
        description="Fine-tune XTTS-v2 on a dataset. --custom_model may be any checkpoint: its content decides "
                    "whether to resume, fine-tune from its weights, or extend the vocabulary.",
    )
    add_arguments(parser, TrainOptions)
    parser.add_argument("--dry_run", action="store_true",
                        help="print what this start would do (resume, base or extend_vocab; from which step) and "
                             "exit without creating or changing anything")
    parser.add_argument("--json", action="store_true", help="with --dry_run: print the plan as one JSON line")
    parser.add_argument("--selfcheck", action="store_true",
                        help="train a few steps on a tiny random model, stop, resume, and report (no usable voice)")
    # Appended by `python -m trainer.distribute`: accepted so multi-GPU launches work.
    for flag in ("--continue_path", "--restore_path", "--group_id"):
        parser.add_argument(flag, default="", help=argparse.SUPPRESS)
    parser.add_argument("--use_ddp", default="false", help=argparse.SUPPRESS)
    parser.add_argument("--rank", type=int, default=0, help=argparse.SUPPRESS)
    return parser


class StopFlag:
    """SIGINT/SIGTERM ask for a stop at the next update boundary (after a checkpoint); a second SIGINT aborts."""

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> None:
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        print("Stop requested: saving a checkpoint at the next update.", flush=True)

    def __call__(self) -> bool:
        return self.requested


def dry_run(opts: TrainOptions, as_json: bool) -> int:
    """Print the plan training would make, touching nothing."""
    opts.validate()
    plan = preview_start(opts)
    print(json.dumps(plan.to_dict()) if as_json else plan.describe())
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, format="%(message)s")
    if args.selfcheck:
        return run_selfcheck()
    opts = from_namespace(TrainOptions, args)
    try:
        if args.dry_run:
            return dry_run(opts, args.json)
        stop = StopFlag()
        stop.install()
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over a file-size limit: an OSError to report, not a crash
        dist = Distributed.from_launch(args.rank, args.group_id, args.use_ddp)
        with dist.connected():  # the launch's process group (NCCL, or gloo without CUDA); nothing when alone
            train_gpt(opts, stop_requested=stop, dist=dist)
    except TrainingDiverged as e:  # a divergence stop: nothing new saved; automatic restarts leave exit 3 alone
        print(f"Error: {e}", file=sys.stderr)
        return e.exit_code
    except (UserInputError, ValueError, OSError) as e:
        if opts.debug:
            raise
        print(f"Error: {e}", file=sys.stderr)
        return 1
    return 0
