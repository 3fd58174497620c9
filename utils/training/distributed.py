"""Which process of a multi-GPU launch this is, from trainer.distribute's arguments or torchrun's environment."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

from utils.errors import RunError
from utils.procinfo import process_started_at


@dataclass
class Distributed:
    """Which process of a multi-GPU launch this is. `python -m trainer.distribute` appends --rank, --group_id and
    --use_ddp to the command; torchrun sets RANK, WORLD_SIZE and TORCHELASTIC_RUN_ID in the environment instead.
    Rank 0 alone writes (run folder records, checkpoints, progress); all ranks restore the same state."""

    rank: int = 0
    group_id: str = ""
    use_ddp: bool = False
    world_size: int | None = None  # torchrun: the processes it started (trainer.distribute: one per visible GPU)

    @property
    def writes(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_launch(cls, rank: int, group_id: str, use_ddp: str, environ: dict[str, str] | None = None
                    ) -> Distributed:
        """From trainer.distribute's arguments when it passed them, else from torchrun's environment."""
        env = os.environ if environ is None else environ
        if str(use_ddp).lower() == "true" or "TORCHELASTIC_RUN_ID" not in env:
            return cls(rank=rank, group_id=group_id, use_ddp=str(use_ddp).lower() == "true")
        world, local_world = int(env["WORLD_SIZE"]), int(env.get("LOCAL_WORLD_SIZE", env["WORLD_SIZE"]))
        if local_world != world:
            raise RunError(f"torchrun started {world} processes on several machines ({local_world} here): training "
                           f"across machines is not supported (coqui's trainer uses the global rank as the GPU "
                           f"index). Run torchrun on one machine, with --nproc_per_node set to its GPUs.")
        # Every rank is a child of the same torchrun agent: its start names the launch alike in all of them.
        agent = os.getppid()
        started = process_started_at(agent) or datetime.datetime.now()
        return cls(rank=int(env["RANK"]), group_id=f"group_{started:%Y_%m_%d-%H%M%S}-{agent}", use_ddp=world > 1,
                   world_size=world)
