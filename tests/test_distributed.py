"""Several ranks that divide the work: each epoch's positions split across ranks (every one trained once),
gradients averaged through DDP (gloo on CPU, as NCCL on GPUs), a global data position that resumes on any
number of ranks, torchrun's restarts continuing from `--custom_model latest`, and two "machines" on 127.0.0.1.
Only global rank 0 writes into the run folder. Ranks record what they trained through XTTS_FT_TRACE_DIR."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, assert_same_training_state, read_events

from utils.training.sampling import EpochShard, ShardSampler, resume_shard

TORCHRUN = str(Path(sys.executable).parent / "torchrun")
TWO_RANKS = ("--standalone", "--nproc_per_node", "2")


def reserved_port() -> int:
    """A port for a launcher that must be told one (trainer.distribute's MASTER_PORT), held for it: a connection
    to it is closed from its side, so the port waits in TIME_WAIT (a minute), where the kernel hands it to no
    other bind or connect, while rank 0's store (libuv sets SO_REUSEADDR) may bind it. Finding a free port and
    releasing it would let another test worker take it in the seconds before rank 0 starts."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = server.accept()
            accepted.close()  # this side closes first: it is this side's end that waits in TIME_WAIT
            client.recv(1)
    return port


def test_a_reserved_port_is_refused_to_others_and_taken_by_rank_0s_store():
    """What trainer.distribute's MASTER_PORT relies on: no other socket can bind the port, torch's store can."""
    from datetime import timedelta

    port = reserved_port()
    with socket.socket() as other, pytest.raises(OSError, match="in use"):
        other.bind(("127.0.0.1", port))
    store = torch.distributed.TCPStore("localhost", port, 1, is_master=True, timeout=timedelta(seconds=30))
    store.set("rank 0", "here")
    assert store.port == port and store.get("rank 0") == b"here"


def train_argv(base, dataset, output, *extra: str) -> list[str]:
    return ["utils/gpt_train.py", "--train_csv", str(dataset.train_csv), "--eval_csv", str(dataset.eval_csv),
            "--output_path", str(output), "--base_model_dir", str(base), "--num_epochs", "2", "--batch_size", "2",
            *extra]


def launch_env(trace: Path | None = None, **extra: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", **extra)
    if trace is not None:
        env["XTTS_FT_TRACE_DIR"] = str(trace)
    return env


def torchrun(base, dataset, output, *extra: str, trace: Path | None = None, launcher=TWO_RANKS
             ) -> subprocess.CompletedProcess:
    return subprocess.run([TORCHRUN, *launcher, *train_argv(base, dataset, output, *extra)], cwd=ROOT,
                          env=launch_env(trace), capture_output=True, text=True, timeout=600)


def read_trace(folder: Path) -> dict[int, list[dict]]:
    """rank -> its updates, as the ranks recorded them (epoch, step, positions, weights digest)."""
    return {int(p.stem.removeprefix("rank_")): [json.loads(line) for line in p.read_text().splitlines()]
            for p in sorted(folder.glob("rank_*.jsonl"))}


def positions_per_epoch(*traces: dict[int, list[dict]]) -> dict[int, list[int]]:
    """epoch -> every position trained in it, all ranks and launches together (sorted, repeats kept)."""
    found: dict[int, list[int]] = {}
    for trace in traces:
        for updates in trace.values():
            for u in updates:
                found.setdefault(u["epoch"], []).extend(u["positions"])
    return {epoch: sorted(p) for epoch, p in found.items()}


def run_dirs(output: Path) -> list[Path]:
    return sorted((output / "run" / "training").iterdir())


@pytest.fixture(scope="module")
def two_rank_run(tiny_base, tiny_dataset, tmp_path_factory):
    """An uninterrupted two-rank run: 8 clips, batch 2 per rank, 2 epochs -> 2 updates per epoch."""
    out, trace = tmp_path_factory.mktemp("two_ranks"), tmp_path_factory.mktemp("two_ranks_trace")
    done = torchrun(tiny_base, tiny_dataset, out, trace=trace)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (run,) = run_dirs(out)
    return run, read_trace(trace)


# --- the split, without a model --------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "batch", "world", "start"), [(8, 2, 2, 0), (8, 3, 2, 0), (7, 2, 3, 0), (8, 1, 2, 7),
                                                            (10, 2, 4, 4), (8, 2, 1, 6)])
def test_every_position_once_across_ranks_and_the_ranks_step_together(n, batch, world, start):
    shards = [EpochShard(n, batch, world, r, start) for r in range(world)]
    trained = sorted(p for s in shards for i in range(s.n_batches) for p in s.positions(i))
    assert trained == list(range(start, n))
    assert {s.n_batches for s in shards} == {-(-(n - start) // (batch * world))}
    for i in range(shards[0].n_batches):
        assert sum(s.weight(i) for s in shards) == pytest.approx(world)  # the ranks' mean gradient is the batch's
        assert len(shards[0].positions(i)) >= 1  # rank 0 always has a share
    for s in shards:  # every rank runs every step: an empty share yields a stand-in batch (weighted 0)
        batches = list(ShardSampler(s))
        assert len(batches) == s.n_batches and all(batches)
        assert all(s.weight(i) == 0 for i, b in enumerate(batches) if not s.positions(i))


def test_a_resume_on_another_number_of_ranks_continues_at_the_global_position():
    same = resume_shard(8, 2, 2, 0, grad_accum=1, position=4, saved_batch=1)
    assert (same.first_batch, same.n_batches) == (1, 2)  # same layout: the uninterrupted run's numbering
    ended = resume_shard(8, 2, 1, 0, grad_accum=3, position=8, saved_batch=4)  # saved after the epoch's last batch
    assert (ended.first_batch, ended.n_batches) == (4, 4)
    one = resume_shard(8, 2, 1, 0, grad_accum=2, position=4, saved_batch=1)
    assert (one.start, one.first_batch, one.n_batches) == (4, 2, 4)  # update windows start at the resume
    old = resume_shard(8, 2, 1, 0, grad_accum=2, position=4, saved_batch=2)  # a one-rank file's own layout
    assert (old.first_batch, old.n_batches) == (2, 4)


def test_uneven_and_accumulated_batches_average_like_one_batch(tmp_path):
    """Two gloo ranks through the DDP wrapper the trainer uses (a linear model: no dropout, so comparable to one
    process): for an uneven last batch (shares 2 and 1) and a batch with one empty share (a stand-in weighted 0)
    the averaged gradient is the mean over the batch's samples; two batches accumulated under no_sync are averaged
    by the update's last backward."""
    store = f"file://{tmp_path / 'store'}"  # the ranks meet through a file: no port to find, none to lose
    torch.multiprocessing.start_processes(_ddp_rank, args=(store,), nprocs=2, start_method="spawn")


def _ddp_rank(rank: int, init_method: str) -> None:
    from utils.training import ddp
    from utils.training.distributed import Distributed

    torch.set_num_threads(1)
    dist = Distributed(rank=rank, use_ddp=True, world_size=2, init_method=init_method)
    data = torch.arange(12.0).reshape(4, 3) / 10

    class Linear(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(3, 1)

        def train_step(self, batch, criterion):
            return {}, {"loss": (self.layer(batch["x"]) ** 2).mean()}

    def reference(rows):
        single = Linear()
        single.load_state_dict(model.state_dict())
        (single.layer(data[rows]) ** 2).mean().backward()
        return single.layer.weight.grad

    with dist.connected():
        torch.manual_seed(0)
        model = Linear()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        wrapped = ddp.wrap_for_ddp(model, [opt], dist)
        for n in (3, 1):  # shares [0, 1] + [2]; then [0] + [] (rank 1 a stand-in)
            shard = EpochShard(n, 2, 2, rank)
            rows = list(next(iter(ShardSampler(shard))))
            _, losses = ddp.forward(wrapped, {"x": data[rows]}, None, sync=True)
            ddp.weight_gradient(losses["loss"], shard.weight(0)).backward()
            assert torch.allclose(model.layer.weight.grad, reference(list(range(n))), atol=1e-6)
            opt.zero_grad()
        for step, sync in enumerate((False, True)):  # two batches of one sample per rank: one all-reduce
            _, losses = ddp.forward(wrapped, {"x": data[[2 * step + rank]]}, None, sync=sync)
            (losses["loss"] / 2).backward()
        assert torch.allclose(model.layer.weight.grad, reference([0, 1, 2, 3]), atol=1e-6)


# --- real training on two ranks ---------------------------------------------------------------------------
@pytest.mark.slow
def test_two_ranks_split_each_epoch_and_hold_the_same_weights(two_rank_run, reference_run):
    """Each epoch's positions are split between the ranks, every one trained once; after every update both
    ranks hold the same weights (gradients averaged), and an epoch takes half the updates of one rank."""
    run, trace = two_rank_run
    assert positions_per_epoch(trace) == {0: list(range(8)), 1: list(range(8))}
    for u0, u1 in zip(trace[0], trace[1], strict=True):
        assert u0["step"] == u1["step"] and not set(u0["positions"]) & set(u1["positions"])
        assert u0["weights"] == u1["weights"], f"the ranks' weights differ after update {u0['step']}"
    assert len({u["weights"] for u in trace[0]}) == 4  # and every update changed them
    updates = read_events(run)
    assert [e["step"] for e in updates] == [1, 2, 3, 4] and {e["total"] for e in updates} == {4}
    assert {e["total"] for e in read_events(reference_run.run_dir)} == {8}  # one rank: 4 updates per epoch
    assert not (run / "trainer_1_log.txt").exists() and not (run / ".launch_token").exists()


@pytest.mark.slow
def test_two_rank_run_stopped_mid_epoch_resumes_on_two_or_one_rank(two_rank_run, tiny_base, tiny_dataset,
                                                                   tmp_path):
    """Stopped after update 1 (positions 0-3 of epoch 0): resumed on two ranks it ends bit-identical to the
    uninterrupted two-rank run; resumed on one rank it trains positions 4-7 and then whole epochs. Either way
    every position of every epoch is trained exactly once."""
    traces = [tmp_path / name for name in ("stop", "two", "one")]
    stop = torchrun(tiny_base, tiny_dataset, tmp_path / "out", "--max_steps", "1", trace=traces[0])
    assert stop.returncode == 0, stop.stderr[-3000:]
    (run,) = run_dirs(tmp_path / "out")
    checkpoint = run / "checkpoint_1.pth"
    assert torch.load(checkpoint, weights_only=True, mmap=True)["run_state"]["epoch_position"] == 4

    two = torchrun(tiny_base, tiny_dataset, tmp_path / "out", "--custom_model", str(checkpoint), trace=traces[1])
    assert two.returncode == 0, two.stderr[-3000:]
    assert_same_training_state(run / "checkpoint_4.pth", two_rank_run[0] / "checkpoint_4.pth")
    stopped = read_trace(traces[0])
    assert positions_per_epoch(stopped, read_trace(traces[1])) == {0: list(range(8)), 1: list(range(8))}

    one = subprocess.run([sys.executable, *train_argv(tiny_base, tiny_dataset, tmp_path / "out", "--custom_model",
                                                      str(checkpoint))], cwd=ROOT, env=launch_env(traces[2]),
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    assert positions_per_epoch(stopped, read_trace(traces[2])) == {0: list(range(8)), 1: list(range(8))}
    resumed = next(r for r in run_dirs(tmp_path / "out") if r != run)  # checkpoint_1 is no longer its run's newest
    updates = read_events(resumed)
    assert [e["step"] for e in updates] == [2, 3, 4, 5, 6, 7] and {e["total"] for e in updates} == {7}


@pytest.mark.slow
def test_an_empty_share_of_the_last_batch_joins_the_step(tiny_base, tiny_dataset, tmp_path):
    """One rank trains 7 of 8 positions (batch 1); resumed on two ranks, the last position is rank 0's and rank 1
    has none: it still steps (no hang), trains nothing, and both ranks end with the same weights."""
    first = subprocess.run([sys.executable, *train_argv(tiny_base, tiny_dataset, tmp_path / "out", "--batch_size",
                                                        "1", "--num_epochs", "1", "--max_steps", "7")],
                           cwd=ROOT, env=launch_env(), capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    (run,) = run_dirs(tmp_path / "out")
    resumed = torchrun(tiny_base, tiny_dataset, tmp_path / "out", "--batch_size", "1", "--num_epochs", "1",
                       "--custom_model", str(run / "checkpoint_7.pth"), trace=tmp_path / "trace")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trace = read_trace(tmp_path / "trace")
    assert [u["positions"] for u in trace[0]] == [[7]] and [u["positions"] for u in trace[1]] == [[]]
    assert trace[0][0]["weights"] == trace[1][0]["weights"]
    assert [e["step"] for e in read_events(run)][-1] == 8


def worker_pids(agent: int) -> dict[int, int]:
    """rank -> pid of the workers a torchrun agent started (its children, by their RANK)."""
    found = {}
    for child in Path(f"/proc/{agent}/task/{agent}/children").read_text().split():
        env = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        ranks = [int(e[5:]) for e in env if e.startswith(b"RANK=")]
        if ranks:
            found[ranks[0]] = int(child)
    return found


def progress(output: Path) -> list[dict]:
    found = []
    for path in output.glob("run/training/*/progress.jsonl"):
        text = path.read_text()
        found += [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]
    return found


@pytest.mark.slow
def test_torchrun_restarts_a_killed_worker_from_latest(two_rank_run, tiny_base, tiny_dataset, tmp_path):
    """`torchrun --max_restarts 1 ... --custom_model latest`: the first launch starts from the base; rank 1,
    SIGKILLed once a checkpoint is durable, is restarted with rank 0, both continue from the newest checkpoint,
    and the run ends bit-identical to the uninterrupted one."""
    out = tmp_path / "out"
    cmd = [TORCHRUN, *TWO_RANKS, "--max_restarts", "1",
           *train_argv(tiny_base, tiny_dataset, out, "--custom_model", "latest", "--save_step", "1")]
    log = (tmp_path / "torchrun.log").open("w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=launch_env(), stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while not any(e["event"] == "checkpoint" for e in progress(out)):
        assert proc.poll() is None and time.time() < deadline, "no checkpoint before the run ended"
        time.sleep(0.05)
    os.kill(worker_pids(proc.pid)[1], signal.SIGKILL)
    proc.wait(timeout=600)
    assert proc.returncode == 0, (tmp_path / "torchrun.log").read_text()[-4000:]
    (run,) = run_dirs(out)
    starts = read_events(run, "start")
    assert [s["mode"] for s in starts] == ["base", "resume"] and 1 <= starts[1]["step"] < 4
    assert_same_training_state(run / "checkpoint_4.pth", two_rank_run[0] / "checkpoint_4.pth")


@pytest.mark.slow
def test_after_a_restart_the_ranks_meet_again_even_when_one_starts_late(tmp_path):
    """torchrun's store keeps a dead attempt's keys; a rank that reads them before the late rank 0 writes its own
    must still meet it (tests/restart_worker.py)."""
    done = subprocess.run([TORCHRUN, *TWO_RANKS, "--max_restarts", "1", str(ROOT / "tests" / "restart_worker.py")],
                          cwd=tmp_path, env=launch_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "met 1 rank 0 sum 2" in done.stdout and "met 1 rank 1 sum 2" in done.stdout  # lines may interleave


def two_machines(base, dataset, outputs: tuple[Path, Path], trace: Path, *extra: str) -> list[tuple[int, str]]:
    """Two torchrun agents, one process each, meeting through c10d on 127.0.0.1 as two machines would. The
    rendezvous store is this process's, on a port it bound itself (0: the kernel's choice) and holds throughout;
    both agents connect to it (is_host=false), so no other test worker can take its port in between."""
    from datetime import timedelta

    store = torch.distributed.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False,
                                       timeout=timedelta(seconds=300))
    launcher = ("--nnodes", "2", "--nproc_per_node", "1", "--rdzv_backend", "c10d", "--rdzv_endpoint",
                f"127.0.0.1:{store.port}", "--rdzv_conf", "is_host=false", "--rdzv_id", f"test-{trace.name}")
    logs = [trace.parent / f"{trace.name}_node_{i}.log" for i in range(2)]
    procs = [subprocess.Popen([TORCHRUN, *launcher, *train_argv(base, dataset, out, *extra)], cwd=ROOT,
                              env=launch_env(trace), stdout=log.open("w"), stderr=subprocess.STDOUT)
             for out, log in zip(outputs, logs, strict=True)]
    done = [(p.wait(timeout=600), log.read_text()) for p, log in zip(procs, logs, strict=True)]
    del store  # the rendezvous is over
    return done


@pytest.mark.slow
def test_two_machines_train_into_one_run_folder_that_rank_0_alone_writes(tiny_base, tiny_dataset, tmp_path):
    """--nnodes 2 on one host: one run folder, written by global rank 0 only (one progress log, no other rank's
    files), the epoch split between the machines. With a folder each (as without shared storage) both fail in
    one sentence before training."""
    out = tmp_path / "shared"
    done = two_machines(tiny_base, tiny_dataset, (out, out), tmp_path / "trace", "--num_epochs", "1")
    assert [rc for rc, _ in done] == [0, 0], done
    (run,) = run_dirs(out)
    assert [e["step"] for e in read_events(run)] == [1, 2]
    assert sorted(p.name for p in run.glob("*.pth")) == ["best_model.pth", "checkpoint_2.pth"]
    assert not list(run.glob("trainer_1_log.txt")) and len(list(run.glob("events.out.tfevents.*"))) == 1
    assert positions_per_epoch(read_trace(tmp_path / "trace")) == {0: list(range(8))}

    apart = (tmp_path / "node_a", tmp_path / "node_b")
    refused = two_machines(tiny_base, tiny_dataset, apart, tmp_path / "trace2", "--num_epochs", "1")
    assert all(rc != 0 and "cannot see the run folder" in text and "storage every machine shares" in text
               for rc, text in refused), refused
    made = [o for o in apart if (o / "run" / "training").is_dir()]
    assert len(made) == 1 and not list(made[0].rglob("*.pth"))  # rank 0's folder only, nothing trained


# --- the launchers' arguments ----------------------------------------------------------------------------
def trainer_distribute(base, dataset, output, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", CUDA_VISIBLE_DEVICES="0,1",
               OMP_NUM_THREADS="1", MASTER_PORT=str(reserved_port()))
    cmd = [sys.executable, "-m", "trainer.distribute", "--script", "utils/gpt_train.py", "--gpus", "0,1",
           *train_argv(base, dataset, output, *extra)[1:]]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_trainer_distribute_shares_one_run_folder_and_only_rank_0_writes(tiny_base, tiny_dataset, tmp_path):
    """trainer.distribute passes --rank/--group_id/--use_ddp: the ranks train together in one run folder that
    rank 0 alone writes, and both resume from the same checkpoint."""
    first = trainer_distribute(tiny_base, tiny_dataset, tmp_path, "--max_steps", "2")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    (run,) = run_dirs(tmp_path)
    assert "-group_" in run.name and not (run / "trainer_1_log.txt").exists()
    assert sorted(p.name for p in run.glob("*.pth")) == ["checkpoint_2.pth"]
    assert [e["step"] for e in read_events(run)] == [1, 2]  # one writer of progress, not two
    assert first.stdout.count("Fine-tuning from model.pth") == 2

    second = trainer_distribute(tiny_base, tiny_dataset, tmp_path, "--custom_model", str(run / "checkpoint_2.pth"),
                                "--max_steps", "3")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert second.stdout.count("Resuming from checkpoint_2.pth: step 2, epoch 0, learning rate 5e-06") == 2
    assert sorted(p.name for p in run.glob("checkpoint_*.pth")) == ["checkpoint_2.pth", "checkpoint_3.pth"]
    assert len(run_dirs(tmp_path)) == 1


TORCHRUN_ENV = {"TORCHELASTIC_RUN_ID": "x", "RANK": "1", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}


def test_launch_arguments_come_from_trainer_distribute_or_torchrun():
    from utils.training.distributed import DISTRIBUTE_URL, Distributed

    plain = Distributed.from_launch(0, "", "false", environ={})
    assert (plain.rank, plain.use_ddp, plain.active, plain.size) == (0, False, False, 1)
    launcher = Distributed.from_launch(1, "group_2026_11_26-101500", "true",
                                       environ={"RANK": "1", "CUDA_VISIBLE_DEVICES": "0,1"})
    assert (launcher.rank, launcher.group_id, launcher.active, launcher.size, launcher.local_rank,
            launcher.init_method) == (1, "group_2026_11_26-101500", True, 2, 1, DISTRIBUTE_URL)
    first, second = (Distributed.from_launch(0, "", "false", environ=dict(TORCHRUN_ENV, RANK=r)) for r in "01")
    assert (first.rank, second.rank, first.active, first.size) == (0, 1, True, 2)
    assert first.group_id.startswith("group_")
    machines = Distributed.from_launch(0, "", "false", environ={**TORCHRUN_ENV, "RANK": "3", "LOCAL_RANK": "1",
                                                                 "WORLD_SIZE": "4"})
    assert (machines.rank, machines.local_rank, machines.size, machines.writes) == (3, 1, 4, False)
