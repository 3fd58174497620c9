"""Fine-tune XTTS-v2's GPT: `train_gpt(options)` and its command line.

Given any checkpoint, what it contains decides how training starts (`classify_checkpoint`): optimizer state
-> resume everything from exactly that file; weights only -> fine-tune from them with a fresh optimizer;
weights whose text rows don't fit the vocabulary -> expand them by token string once, then fine-tune.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python utils/gpt_train.py`: make `utils` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils import checkpoints as ck
from utils.checkpoints import CheckpointInfo, classify_checkpoint
from utils.formatter import SAMPLE_RATE, XTTS_MAX_TEXT_TOKENS
from utils.manifest import data_manifest, describe_changes
from utils.options import TrainOptions, add_options, options_from_namespace
from utils.procinfo import process_started_at

logger = logging.getLogger("xtts_ft")
RUN_RECORD = "run.json"  # in each run folder: where it came from and every start
MANIFEST_FILE = "data_manifest.json"  # the training data of the latest start
LOCK_FILE = ".lock"

__all__ = ["CheckpointInfo", "Distributed", "StartPlan", "TrainResult", "classify_checkpoint", "main", "train_gpt"]


class RunError(ValueError):
    """A start that cannot go ahead; the message says why and what to do."""


@dataclass
class StartPlan:
    """How this start uses its checkpoint, decided before any model is built."""

    mode: str  # "resume", "base" or "extend_vocab"
    source: Path  # the file the weights (and state) come from
    info: CheckpointInfo
    vocab_path: Path  # the vocabulary this run trains with
    source_vocab_path: Path  # the vocabulary the source's weights were trained with
    run_dir: Path | None
    continues_run: bool  # True: writing on in the source's own run folder

    def describe(self) -> str:
        return self.info.describe() if self.mode == self.info.mode else (
            f"Start over from {self.source.name}: weights only, fresh optimizer, step 0"
        )


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


@dataclass
class TrainResult:
    """How a call to train_gpt ended."""

    run_dir: Path
    mode: str
    start_step: int
    step: int
    epoch: int
    reason: str  # "completed", "reached --max_steps N", "stop requested", ...
    last_checkpoint: Path | None


# --- deciding how to start -------------------------------------------------------------------------------
def find_source_vocab(source: Path, info: CheckpointInfo, candidates: list[Path]) -> Path:
    """The vocabulary the source's weights were trained with: the one whose fingerprint the file records
    (looked for beside the file, then among `candidates`), else the base folder's (the last candidate)."""
    from utils.vocab import vocab_sha256

    if not info.vocab_sha256:
        return candidates[-1]
    for path in [source.parent / "vocab.json", *candidates]:
        if path.is_file() and vocab_sha256(path) == info.vocab_sha256:
            return path
    raise RunError(
        f"{source} was trained with a vocabulary (sha256 {info.vocab_sha256[:12]}...) that is neither beside it nor "
        f"given: pass that vocab.json with --vocab."
    )


def is_newest_in_own_run(source: Path) -> bool:
    """True when `source` is the newest complete checkpoint of one of our run folders."""
    if not (source.parent / RUN_RECORD).is_file():
        return False
    own = ck.run_checkpoints(source.parent)
    return bool(own) and own[-1].resolve() == source.resolve()


def new_run_dir(output_path: Path, run_name: str) -> Path:
    """A fresh folder under <output>/run/training/, unique even for two runs started in the same second."""
    parent = output_path / "run" / "training"
    parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    for n in range(1000):
        candidate = parent / (f"{run_name}-{stamp}" + (f"-{n}" if n else ""))
        with contextlib.suppress(FileExistsError):
            candidate.mkdir()
            return candidate
    raise RunError(f"Could not create a new run folder under {parent}.")


def shared_run_dir(output_path: Path, run_name: str, group_id: str) -> Path:
    """The run folder every rank of one multi-GPU launch agrees on: named after the launch's group id."""
    folder = output_path / "run" / "training" / f"{run_name}-{group_id}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def plan_start(opts: TrainOptions, base_vocab: Path, base_model: Path) -> StartPlan:
    """Classify the start file and decide mode, vocabularies and run folder."""
    from utils.vocab import vocab_sha256

    source = Path(opts.custom_model) if opts.custom_model else base_model
    info = ck.classify_checkpoint(source, opts.vocab or base_vocab)  # its pickled structure only: no tensor data
    candidates = [Path(opts.vocab)] if opts.vocab else []
    source_vocab = find_source_vocab(source, info, [*candidates, base_vocab])
    mode = info.mode
    if mode == "resume" and not opts.restart:
        if opts.vocab and vocab_sha256(opts.vocab) != vocab_sha256(source_vocab):
            raise RunError(
                f"--vocab {opts.vocab} differs from the vocabulary {source.name} was trained with ({source_vocab}): "
                f"resume without --vocab, or use --restart to fine-tune its weights with a new vocabulary."
            )
        vocab = source_vocab
        continues = is_newest_in_own_run(source)
    else:
        vocab = Path(opts.vocab) if opts.vocab else base_vocab
        mode = "base" if vocab_sha256(vocab) == vocab_sha256(source_vocab) else "extend_vocab"
        continues = False
    run_dir = source.parent if continues else None  # a new run folder is made once the data is checked
    return StartPlan(mode, source, info, vocab, source_vocab, run_dir, continues)


# --- the run folder --------------------------------------------------------------------------------------
@contextlib.contextmanager
def locked_run_dir(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run folder; the kernel drops it when the process dies (even by SIGKILL)."""
    try:
        handle = open(run_dir / LOCK_FILE, "a")  # noqa: SIM115 - held for the whole run, closed below
    except OSError as e:
        raise RunError(f"Cannot write into the run folder {run_dir} ({e.strerror}): make it writable, or copy the "
                       f"checkpoint elsewhere and resume it from there.") from e
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunError(f"Another training is already writing into {run_dir}: stop it first, or start from "
                           f"another checkpoint (a new run folder is made).") from None
        yield


def record_start(plan: StartPlan, opts: TrainOptions) -> None:
    """Append this start to run.json (source, mode, options), creating it for a new run folder."""
    path = plan.run_dir / RUN_RECORD
    record = json.loads(path.read_text()) if path.is_file() else {"created": _now(), "starts": []}
    record["starts"].append({"time": _now(), "mode": plan.mode, "source": str(plan.source.resolve()),
                             "step": plan.info.step if plan.mode == "resume" else 0, "options": vars(opts)})
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, path)


def _now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


# --- building the model ----------------------------------------------------------------------------------
def build_config(opts: TrainOptions, base, vocab: Path, run_dir: Path):
    """coqui's GPTTrainerConfig for this run; the model's dimensions come from the base folder's config.json."""
    from TTS.tts.configs.xtts_config import XttsAudioConfig
    from TTS.tts.layers.xtts.trainer.gpt_trainer import GPTArgs, GPTTrainerConfig

    known = GPTArgs.__dataclass_fields__
    model_args = GPTArgs(**{k: v for k, v in base.config["model_args"].items() if k in known})
    model_args.max_wav_length = int(opts.max_audio_length * SAMPLE_RATE)
    model_args.max_text_length = XTTS_MAX_TEXT_TOKENS
    model_args.mel_norm_file = str(base.mel_stats_path)
    model_args.dvae_checkpoint = str(base.dvae_path)
    model_args.xtts_checkpoint = ""  # weights are loaded by us, checked, from the one file
    model_args.tokenizer_file = str(vocab)
    audio = XttsAudioConfig(sample_rate=SAMPLE_RATE, dvae_sample_rate=SAMPLE_RATE, output_sample_rate=24000)
    languages = sorted(set(base.config.get("languages") or []) | {opts.language})
    return GPTTrainerConfig(
        epochs=opts.num_epochs, output_path=str(run_dir), model_args=model_args, run_name=opts.run_name,
        project_name="xtts_ft", dashboard_logger="tensorboard", audio=audio, languages=languages,
        batch_size=opts.batch_size, eval_batch_size=opts.batch_size, num_loader_workers=opts.num_workers,
        num_eval_loader_workers=opts.num_workers, print_step=1 if opts.debug else opts.print_step, plot_step=1,
        log_model_step=10**12, save_step=10**12, save_checkpoints=False, save_n_checkpoints=opts.keep_checkpoints,
        save_best_after=0, print_eval=False, optimizer="AdamW", optimizer_wd_only_on_weights=True,
        optimizer_params={"betas": [0.9, 0.96], "eps": 1e-8, "weight_decay": 1e-2}, lr=opts.lr,
        lr_scheduler="MultiStepLR",
        lr_scheduler_params={"milestones": [50000 * 18, 150000 * 18, 300000 * 18], "gamma": 0.5, "last_epoch": -1},
        scheduler_after_epoch=False, training_seed=opts.seed, mixed_precision=opts.mixed_precision,
        test_sentences=[],
    )


def build_model(config, vocab: Path):
    """coqui's GPTTrainer with our tokenizer (which also accepts languages coqui's list lacks)."""
    from TTS.tts.layers.xtts.trainer.gpt_trainer import GPTTrainer

    from utils.vocab import make_tokenizer

    model = GPTTrainer(config)
    model.xtts.tokenizer = make_tokenizer(vocab)
    return model


def read_samples(csv_path: str, language: str) -> list[dict[str, Any]]:
    """The dataset's rows as the XTTS trainer's sample dicts (audio paths relative to the CSV)."""
    from utils.formatter import load_samples

    return load_samples(csv_path, language)


# --- events ----------------------------------------------------------------------------------------------
class EventLog:
    """JSON-lines progress (for the WebUI) and one-line facts on the console (for people)."""

    def __init__(self, paths: list[Path], callback: Callable[[dict[str, Any]], None] | None) -> None:
        self.paths = paths
        self.callback = callback
        self.started = time.time()
        self.first_step: int | None = None

    def __call__(self, event: dict[str, Any]) -> None:
        event = {"time": round(time.time(), 3), **event}
        if event["event"] == "update":
            if self.first_step is None:
                self.first_step = event["step"] - 1
            done = event["step"] - self.first_step
            rate = (time.time() - self.started) / max(done, 1)
            event["eta_s"] = round(rate * max(event["total"] - event["step"], 0), 1)
        line = json.dumps(event, default=str)
        for path in self.paths:
            with open(path, "a") as f:
                f.write(line + "\n")
        if event["event"] in ("start", "checkpoint", "end", "warning"):
            print(_human(event), flush=True)
        if self.callback is not None:
            self.callback(event)


def _human(event: dict[str, Any]) -> str:
    if event["event"] == "checkpoint":
        return f"Saved {Path(event['path']).name}: step {event['step']}, epoch {event['epoch']}"
    if event["event"] == "end":
        return (f"Training ended ({event['reason']}): step {event['step']}, epoch {event['epoch']}, "
                f"run {event['run_dir']}")
    return event["message"]


# --- the whole start -------------------------------------------------------------------------------------
def train_gpt(
    opts: TrainOptions,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    stop_requested: Callable[[], bool] = lambda: False,
    dist: Distributed | None = None,
) -> TrainResult:
    """Plan the start from the checkpoint's content, build the model, load the checkpoint once, train."""
    dist = dist or Distributed()
    opts.validate()
    base = resolve_base(opts)
    plan = plan_start(opts, base.vocab_path, base.model_path)
    check_dataset(opts, plan.vocab_path, base)
    if plan.run_dir is None:
        plan.run_dir = (shared_run_dir(Path(opts.output_path), opts.run_name, dist.group_id) if dist.use_ddp
                        else new_run_dir(Path(opts.output_path), opts.run_name))
    if not dist.writes:
        return run_training(opts, base, plan, on_event, stop_requested, dist)
    with locked_run_dir(plan.run_dir):
        ck.remove_partial_files(plan.run_dir)
        if not plan.continues_run:
            shutil.copyfile(plan.vocab_path, plan.run_dir / "vocab.json")
            plan.vocab_path = plan.run_dir / "vocab.json"
        record_start(plan, opts)
        return run_training(opts, base, plan, on_event, stop_requested, dist)


def check_dataset(opts: TrainOptions, vocab: Path, base) -> None:
    """Refuse a dataset with errors before anything is written, naming the first lines at fault."""
    from utils.formatter import validate_dataset

    min_cond = base.config["model_args"].get("min_conditioning_length") or 66150
    report = validate_dataset(opts.train_csv, opts.eval_csv, vocab_path=vocab, language=opts.language,
                              max_audio_seconds=opts.max_audio_length, min_conditioning_seconds=min_cond / SAMPLE_RATE,
                              max_text_tokens=XTTS_MAX_TEXT_TOKENS)
    report.raise_if_errors()


def resolve_base(opts: TrainOptions):
    from utils.base_model import ensure_base_model

    if opts.base_model_dir:  # the user's own folder: check it, never download into it
        return ensure_base_model(Path(opts.base_model_dir), download=False)
    return ensure_base_model(None, download=True)


def run_training(opts, base, plan: StartPlan, on_event, stop_requested, dist: Distributed) -> TrainResult:
    from trainer import TrainerArgs

    from utils.run_trainer import RunControl, RunTrainer
    from utils.vocab import vocab_sha256

    logs = [plan.run_dir / "progress.jsonl", *([Path(opts.progress_jsonl)] if opts.progress_jsonl else [])]
    events = EventLog(logs if dist.writes else [], on_event)
    train_samples = read_samples(opts.train_csv, opts.language)
    eval_samples = read_samples(opts.eval_csv, opts.language)
    config = build_config(opts, base, plan.vocab_path, plan.run_dir)
    if dist.world_size is not None:
        config.distributed_url = "env://"  # torchrun's MASTER_ADDR and MASTER_PORT
    model = build_model(config, plan.vocab_path)
    data = load_start_state(model, plan)
    if dist.writes:
        check_disk_space(plan.run_dir, estimate_checkpoint_bytes(model), opts.keep_checkpoints, events)
    manifest = data_manifest([opts.train_csv, opts.eval_csv], train_samples + eval_samples)
    if plan.mode == "resume":
        report_data_changes(plan, data, manifest, events)
    if dist.writes:
        (plan.run_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))
    control = RunControl(
        max_steps=opts.max_steps, save_step=opts.save_step, keep_checkpoints=opts.keep_checkpoints,
        seed=opts.seed, vocab_sha256=vocab_sha256(plan.vocab_path), source=str(plan.source),
        on_event=events, stop_requested=stop_requested, extra_state={"data_digest": manifest["digest"]},
    )
    args = TrainerArgs(continue_path=str(plan.run_dir), restore_path=None, grad_accum_steps=opts.grad_accum,
                       rank=dist.rank, group_id=dist.group_id, use_ddp=dist.use_ddp)
    trainer = RunTrainer(args, config, output_path=str(plan.run_dir), model=model, train_samples=train_samples,
                         eval_samples=eval_samples, parse_command_line_args=False, control=control,
                         world_size=dist.world_size)
    trainer.build_train_dataset()
    start_step = 0
    if plan.mode == "resume":
        trainer.restore_training_state(data)
        start_step = trainer.updates
    del data  # the start file's tensors: what the model and optimizer did not adopt is freed here
    lr = trainer.optimizer[0].param_groups[0]["lr"]
    events({"event": "start", "mode": plan.mode, "run_dir": str(plan.run_dir), "step": trainer.updates,
            "total": trainer.total_updates(), "epoch": trainer.epochs_done, "lr": lr,
            "message": start_message(plan, trainer.updates, trainer.epochs_done, lr)})
    reason = trainer.fit()
    events({"event": "end", "reason": reason, "run_dir": str(plan.run_dir), "step": trainer.updates,
            "total": trainer.total_updates(), "epoch": trainer.epochs_done,
            "path": str(trainer.last_checkpoint) if trainer.last_checkpoint else None})
    return TrainResult(plan.run_dir, plan.mode, start_step, trainer.updates, trainer.epochs_done, reason,
                       trainer.last_checkpoint)


def load_start_state(model, plan: StartPlan) -> dict[str, Any]:
    """Read the start file's tensors once; for base/extend_vocab load its weights now (extend: expanded once,
    first). A resume reads the file into memory rather than mapping it: the optimizer adopts its moments as they
    are, and a mapping would keep every page of the file resident beside them (peak memory ~1.3x a fresh start)."""
    if plan.mode == "extend_vocab":
        from utils.vocab import expand_base_checkpoint

        expanded = expand_base_checkpoint(plan.source, plan.source_vocab_path, plan.vocab_path, plan.run_dir)
        data = ck.read_checkpoint(expanded)
        ck.load_xtts_weights(model.xtts, data[ck.KEY_MODEL], expanded)
        return data
    data = ck.read_checkpoint(plan.source, mmap=plan.mode != "resume")
    if plan.mode == "base":
        ck.load_xtts_weights(model.xtts, data[ck.KEY_MODEL], plan.source)
    return data


def estimate_checkpoint_bytes(model) -> int:
    """Size of one training checkpoint: every weight, plus AdamW's two moments for each trained (GPT) weight."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    moments = 2 * sum(p.numel() * p.element_size() for p in model.xtts.gpt.parameters())
    return weights + moments


def check_disk_space(run_dir: Path, checkpoint_bytes: int, keep: int, events: Callable[[dict], None],
                     free_bytes: int | None = None) -> None:
    """Refuse to start when the disk cannot hold one more checkpoint besides the one being written; warn when
    it cannot hold the kept set (keep + best + one being written)."""
    free = shutil.disk_usage(run_dir).free if free_bytes is None else free_bytes
    gib = 1024**3
    if free < 2 * checkpoint_bytes:
        raise RunError(f"Not enough disk space in {run_dir}: {free / gib:.1f} GiB free, each checkpoint needs "
                       f"{checkpoint_bytes / gib:.1f} GiB (two at once while saving). Free space or pick another "
                       f"--output_path.")
    needed = (keep + 2) * checkpoint_bytes
    if free < needed:
        events({"event": "warning", "step": 0, "epoch": 0, "message": (
            f"Disk space is short in {run_dir}: {free / gib:.1f} GiB free, keeping {keep} checkpoints and the best "
            f"needs about {needed / gib:.1f} GiB. Lower --keep_checkpoints or free space.")})


def report_data_changes(plan: StartPlan, data: dict[str, Any], manifest: dict[str, Any], events: EventLog) -> None:
    """One line when the data differs from what the checkpoint was trained on; training goes on."""
    recorded = (data.get(ck.KEY_RUN_STATE) or {}).get("data_digest")
    if recorded is None or recorded == manifest["digest"]:
        return
    old_path = plan.source.parent / MANIFEST_FILE
    old = json.loads(old_path.read_text()) if old_path.is_file() else {"digest": recorded}
    details = describe_changes(old, manifest) or "details unknown"
    message = (f"Training data changed since {plan.source.name} ({details}): training goes on, but the run no longer "
               f"matches an uninterrupted one exactly.")
    events({"event": "warning", "message": message, "step": plan.info.step, "epoch": plan.info.epoch})


def start_message(plan: StartPlan, step: int, epoch: int, lr: float) -> str:
    if plan.mode == "resume":
        return f"Resuming from {plan.source.name}: step {step}, epoch {epoch}, learning rate {lr:g} ({plan.run_dir})"
    if plan.mode == "extend_vocab":
        return (f"Fine-tuning from {plan.source.name} with an extended vocabulary ({plan.info.checkpoint_text_tokens} "
                f"-> {plan.info.tokenizer_text_tokens} text rows): step 0 ({plan.run_dir})")
    return f"Fine-tuning from {plan.source.name}: weights only, step 0, learning rate {lr:g} ({plan.run_dir})"


# --- command line ----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python utils/gpt_train.py",
        description="Fine-tune XTTS-v2 on a dataset. --custom_model may be any checkpoint: its content decides "
                    "whether to resume, fine-tune from its weights, or extend the vocabulary.",
    )
    add_options(parser)
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, format="%(message)s")
    if args.selfcheck:
        from utils.selfcheck import run_selfcheck

        return run_selfcheck()
    opts = options_from_namespace(args)
    stop = StopFlag()
    stop.install()
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over a file-size limit: an OSError to report, not a crash
    try:
        dist = Distributed.from_launch(args.rank, args.group_id, args.use_ddp)
        train_gpt(opts, stop_requested=stop, dist=dist)
    except (ValueError, OSError) as e:
        if opts.debug:
            raise
        print(f"Error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
