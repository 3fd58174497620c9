"""One rank of a torchrun launch with --max_restarts 1, for tests/test_distributed.py: on the first attempt the
ranks meet, then rank 1 SIGKILLs itself; on the second, rank 0 starts late (as a slow machine would), so the
other rank finds only the dead attempt's keys in torchrun's store until it arrives. Prints `met <attempt>`."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    import torch
    import torch.distributed as torch_dist

    from utils.training.distributed import Distributed

    attempt, rank = int(os.environ["TORCHELASTIC_RESTART_COUNT"]), int(os.environ["RANK"])
    if attempt == 1 and rank == 0:
        time.sleep(2)
    dist = Distributed.from_launch(0, "", "false")
    with dist.connected():
        value = torch.ones(1)
        torch_dist.all_reduce(value)
        print(f"met {attempt} rank {rank} sum {value.item():g}", flush=True)
        if attempt == 0 and rank == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        if attempt == 0:
            torch_dist.barrier()  # fails once rank 1 is gone: torchrun restarts both


if __name__ == "__main__":
    main()
