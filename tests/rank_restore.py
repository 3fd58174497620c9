"""Run the training CLI as one rank of a launch, writing this rank's state just after it restored its start
checkpoint to <dir>/restored_rank<RANK>.pth, for tests/test_guarantees.py to compare across ranks.

    torchrun --standalone --nproc_per_node 2 tests/rank_restore.py DIR <utils/gpt_train.py's arguments>
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def restored_state(trainer: Any) -> dict[str, Any]:
    """What a rank continues from: weights, optimizer and scheduler states, and the position in the run."""
    return {"model": trainer.model.state_dict(), "optimizer": [o.state_dict() for o in trainer.optimizer],
            "scheduler": [s.state_dict() for s in trainer.scheduler if s is not None],
            "position": {"updates": trainer.updates, "epochs_done": trainer.epochs_done,
                         "epoch_batch": trainer.epoch_batch, "batches_done": trainer.total_steps_done}}


def main() -> int:
    import torch

    from utils.training.cli import main as cli_main
    from utils.training.trainer import RunTrainer

    out, argv = Path(sys.argv[1]), sys.argv[2:]
    restore = RunTrainer.restore_training_state

    def restore_and_record(self: Any, data: dict[str, Any]) -> None:
        restore(self, data)
        torch.save(restored_state(self), out / f"restored_rank{os.environ.get('RANK', '0')}.pth")

    RunTrainer.restore_training_state = restore_and_record
    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
