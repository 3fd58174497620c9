"""Which process of a multi-GPU or multi-machine launch this is, and the few steps its ranks take together: the
process group (NCCL on CUDA, gloo without), rank 0's decisions shared with every rank, the check that all ranks
see the one run folder, and agreeing on a stop."""

from __future__ import annotations

import contextlib
import datetime
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as torch_dist

from utils.errors import RunError
from utils.procinfo import process_started_at

T = TypeVar("T")
LAUNCH_TOKEN = ".launch_token"  # written by rank 0 into the run folder, read by every rank, then removed
DISTRIBUTE_URL = "tcp://localhost:54321"  # trainer.distribute's rendezvous (coqui's default distributed_url)
STORE_TIMEOUT = datetime.timedelta(minutes=30)  # how long the ranks wait for each other to start (gloo's default)


@dataclass
class Distributed:
    """Which process of a launch this is. `python -m trainer.distribute` appends --rank, --group_id and --use_ddp
    to the command (one process per GPU of CUDA_VISIBLE_DEVICES, one machine); torchrun sets RANK, LOCAL_RANK,
    WORLD_SIZE and TORCHELASTIC_RUN_ID instead, on any number of machines. Global rank 0 alone writes."""

    rank: int = 0
    group_id: str = ""
    use_ddp: bool = False
    world_size: int | None = None  # processes in the launch, all machines together
    local_rank: int = 0  # this process's GPU on its machine
    init_method: str = "env://"

    @property
    def writes(self) -> bool:
        return self.rank == 0

    @property
    def size(self) -> int:
        return self.world_size or 1

    @property
    def active(self) -> bool:
        """True when ranks train together: a process group, gradients averaged, the data split."""
        return self.use_ddp and self.size > 1

    @classmethod
    def from_launch(cls, rank: int, group_id: str, use_ddp: str, environ: dict[str, str] | None = None
                    ) -> Distributed:
        """From trainer.distribute's arguments when it passed them, else from torchrun's environment."""
        env = os.environ if environ is None else environ
        if str(use_ddp).lower() == "true":
            gpus = [g for g in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
            url = (f"tcp://{env.get('MASTER_ADDR', 'localhost')}:{env['MASTER_PORT']}" if "MASTER_PORT" in env
                   else DISTRIBUTE_URL)
            return cls(rank=rank, group_id=group_id, use_ddp=True, world_size=len(gpus) or None, local_rank=rank,
                       init_method=url)
        if "TORCHELASTIC_RUN_ID" not in env:
            return cls(rank=rank, group_id=group_id)
        world = int(env["WORLD_SIZE"])
        # Only rank 0's name counts (it makes the folder and tells the others): its torchrun agent's start.
        agent = os.getppid()
        started = process_started_at(agent) or datetime.datetime.now()
        return cls(rank=int(env["RANK"]), group_id=f"group_{started:%Y_%m_%d-%H%M%S}-{agent}", use_ddp=world > 1,
                   world_size=world, local_rank=int(env.get("LOCAL_RANK", env["RANK"])))

    # --- the process group -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def connected(self) -> Iterator[None]:
        """The launch's process group while training (nothing when alone): NCCL on this rank's LOCAL_RANK GPU,
        gloo without CUDA."""
        if not self.active or torch_dist.is_initialized():
            yield
            return
        if torch.cuda.is_available():
            torch.cuda.set_device(self.local_rank % torch.cuda.device_count())
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        store = self._attempt_store()
        if store is None:
            torch_dist.init_process_group(backend, init_method=self.init_method, world_size=self.size, rank=self.rank)
        else:
            torch_dist.init_process_group(backend, store=store, world_size=self.size, rank=self.rank)
        try:
            yield
        finally:
            torch_dist.destroy_process_group()

    def _attempt_store(self) -> torch_dist.Store | None:
        """Under torchrun, its agent's store with a prefix new to this attempt: after a restart (--max_restarts)
        the store still holds the previous attempt's keys, and the process group's set-up may read a dead rank's
        address there and fail (pytorch issue 135712). None elsewhere: init_method makes a fresh store."""
        env = os.environ
        if env.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
            return None
        store = torch_dist.TCPStore(env["MASTER_ADDR"], int(env["MASTER_PORT"]), self.size, is_master=False,
                                    timeout=STORE_TIMEOUT)
        return torch_dist.PrefixStore(f"xtts_ft/{self._attempt_token(store)}/", store)

    def _attempt_token(self, store: torch_dist.Store) -> str:
        """A token every rank of this attempt agrees on and no earlier attempt used: rank 0 draws it and answers
        each rank's fresh nonce with it (stale keys carry an old nonce or an old token, and are passed over)."""
        deadline = time.monotonic() + STORE_TIMEOUT.total_seconds()
        if self.writes:
            token, waiting = secrets.token_hex(8), set(range(1, self.size))
            while waiting:
                for rank in sorted(waiting):
                    if _read(store, f"xtts_ft/confirm/{rank}") == token:
                        waiting.discard(rank)
                    elif (nonce := _read(store, f"xtts_ft/hello/{rank}")) is not None:
                        store.set(f"xtts_ft/answer/{rank}", f"{nonce}:{token}")
                if waiting:
                    _wait_a_little(deadline, f"ranks {sorted(waiting)} did not join rank 0")
            return token
        nonce = secrets.token_hex(8)
        store.set(f"xtts_ft/hello/{self.rank}", nonce)
        while True:
            answer = _read(store, f"xtts_ft/answer/{self.rank}") or ":"
            if answer.split(":")[0] == nonce:
                token = answer.split(":")[1]
                store.set(f"xtts_ft/confirm/{self.rank}", token)
                return token
            _wait_a_little(deadline, f"rank {self.rank} got no answer from rank 0")

    def device_ids(self) -> list[int] | None:
        """DDP's device_ids: this rank's GPU, or None on CPU."""
        return [torch.cuda.current_device()] if torch.cuda.is_available() else None

    def _tensor(self, values: list[float]) -> torch.Tensor:
        device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else None
        return torch.tensor(values, dtype=torch.float64, device=device)

    # --- agreeing ----------------------------------------------------------------------------------------
    def any_of(self, flag: Callable[[], bool]) -> Callable[[], bool]:
        """`flag` asked on every rank at the same moment, true when it is true on any (a stop signal reaches the
        ranks at different moments; they must stop at the same update)."""
        if not self.active:
            return flag

        def agreed() -> bool:
            value = self._tensor([1.0 if flag() else 0.0])
            torch_dist.all_reduce(value, op=torch_dist.ReduceOp.MAX)
            return bool(value.item())

        return agreed

    def gather(self, obj: T) -> list[T] | None:
        """Every rank's `obj`, in rank order (a collective: every rank calls it); None when alone."""
        if not self.active:
            return None
        found: list[Any] = [None] * self.size
        torch_dist.all_gather_object(found, obj)
        return found

    def _broadcast(self, obj: Any) -> Any:
        box = [obj]
        torch_dist.broadcast_object_list(box, src=0)
        return box[0]

    def share_path(self, decide: Callable[[], Path | None], root: Path) -> Path | None:
        """Rank 0's `decide()`, on every rank: a path under `root` travels relative to it (each rank's --output_path
        names the shared folder on its machine). An error on rank 0 ends every rank with its sentence."""
        if not self.active:
            return decide()
        if self.writes:
            try:
                found = decide()
            except Exception as e:
                self._broadcast({"error": str(e)})
                raise
            self._broadcast({"path": None if found is None else _relative(found, root)})
            return found
        shared = self._broadcast(None)
        if "error" in shared:
            raise RunError(f"Rank 0 could not start: {shared['error']}")
        return None if shared["path"] is None else root / shared["path"]

    @contextlib.contextmanager
    def publishing(self, root: Path) -> Iterator[Callable[[Path], None]]:
        """Rank 0's side of agreeing on the run folder: call the yielded `publish(run_dir)` once the folder is
        ready; an error before that reaches every rank (they wait in `join_run_dir`), so none waits forever."""
        published = []

        def publish(run_dir: Path) -> None:
            if not self.active:
                return
            token = secrets.token_hex(16)
            (run_dir / LAUNCH_TOKEN).write_text(token)
            self._broadcast({"run_dir": _relative(run_dir, root), "token": token, "host": socket.gethostname()})
            published.append(run_dir)
            try:
                self._check_all_see(run_dir, True, socket.gethostname())
            finally:
                (run_dir / LAUNCH_TOKEN).unlink(missing_ok=True)

        try:
            yield publish
        except Exception as e:
            if self.active and not published:
                self._broadcast({"error": str(e)})
            raise

    def join_run_dir(self, root: Path) -> Path:
        """A non-writing rank's side: rank 0's run folder as this machine sees it, after checking that it is the
        same folder (rank 0's token is there); one sentence on every rank when any cannot see it."""
        shared = self._broadcast(None)
        if "error" in shared:
            raise RunError(f"Rank 0 could not start: {shared['error']}")
        run_dir = root / shared["run_dir"]
        token = run_dir / LAUNCH_TOKEN
        try:
            sees = token.read_text() == shared["token"]
        except OSError:
            sees = False
        self._check_all_see(run_dir, sees, shared["host"])
        return run_dir

    def _check_all_see(self, run_dir: Path, sees: bool, rank0_host: str) -> None:
        views = self.gather((sees, socket.gethostname())) or []
        blind = [f"rank {r} on {host}" for r, (ok, host) in enumerate(views) if not ok]
        if blind:
            raise RunError(f"{', '.join(blind)} cannot see the run folder {run_dir} that rank 0 made"
                           f"{' on ' + rank0_host if rank0_host else ''}: put --output_path on storage every machine "
                           f"shares (e.g. NFS), mounted at the same path.")


def _read(store: torch_dist.Store, key: str) -> str | None:
    return store.get(key).decode() if store.check([key]) else None


def _wait_a_little(deadline: float, what: str) -> None:
    if time.monotonic() > deadline:
        raise RunError(f"The launch's processes could not meet: {what} within {STORE_TIMEOUT}. Check that every "
                       f"machine runs the same torchrun command and reaches the rendezvous endpoint.")
    time.sleep(0.05)


def _relative(path: Path, root: Path) -> str:
    """`path` relative to `root` when it lies inside it, else absolute."""
    path, root = Path(path).absolute(), Path(root).absolute()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
