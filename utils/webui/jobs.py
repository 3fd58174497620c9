"""The WebUI's training job: one `python utils/gpt_train.py` subprocess at a time, read from its JSON lines.

The job runs the CLI with an argument list (no shell) and outlives any browser: the manager belongs to the
server, so closing the page changes nothing and opening it again shows the job. Its state comes only from
the CLI's progress events (`--progress_jsonl`) and its exit status; its console output goes to a log file
whose tail the page shows. Stopping sends SIGTERM: the CLI saves a resumable checkpoint and exits 0; a job
that does not answer within the grace period can be force-stopped (SIGKILL of the trainer's process group, the
trainer and every process it started: checkpoints are written atomically, so the newest one is intact). The
trainer leads a process group of its own, so that group is the job and nothing else; Ctrl-C in the WebUI's
terminal reaches the WebUI alone, which then stops the job it started (`shutdown`: it saves, then exits).

Files of a job live in the WebUI's own folder, whatever the job's --output_path: `<output>/run/webui/train-
<time>.jsonl`, `.log` and `.json` (the job's record: pid, command, files). One job at a time is a lock on
`train.lock` there, held by the training process itself (it inherits the locked file), so a second WebUI on
the same folder cannot start another while it runs. A WebUI that restarts while its job still runs finds the
job from that record (`adopt_running`: the pid, its start time and its command line must match, and the
record's files must lie in the folder) and shows and stops it as before; only the exit status is not its to read.

A job started with `restarts` N > 0 is started again after a crash, up to N times (utils/webui/restarts.py says
what counts as one), from the newest checkpoint of its run folder, into the same progress and log files; a
watcher thread does it, so no page needs to be open. A job taken over from an earlier WebUI is not restarted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from utils.fsio import write_json_atomic
from utils.options import LATEST, TrainOptions
from utils.procinfo import process_start_ticks
from utils.webui.job_progress import Progress, RunView, error_line, log_tail, thin
from utils.webui.paths import JOBS_SUBDIR, ROOT
from utils.webui.restarts import CRASH_LOG_LINES, Crash, check_restarts, ended_text, is_crash, restart_options

TRAIN_SCRIPT = ROOT / "utils" / "gpt_train.py"
LOCK_FILE = "train.lock"
STOP_GRACE_S = 120.0  # a save of a full-size checkpoint to a slow disk takes under a minute
ACTIVE = ("starting", "running", "stopping", "restarting")
LOCK_WAIT_S = 60.0  # a crashed trainer's leftover workers may hold the jobs lock a few seconds after it died


@dataclass(kw_only=True)
class JobStatus(RunView):
    """A training job as the page and the API see it (`/training_status` returns `to_dict()`): what its progress
    events say of the run (RunView), and the job's own state."""

    state: str  # idle, starting, running, stopping, restarting (after a crash), finished, stopped, failed
    running: bool
    message: str
    pid: int | None = None
    returncode: int | None = None
    started: float | None = None
    ended: float | None = None
    log_file: str | None = None
    progress_file: str | None = None
    command: list[str] | None = None
    force_stop: bool = False  # Stop got no answer within the grace period: Force stop (SIGKILL) is offered
    restarts: int = 0  # restarts after a crash so far
    max_restarts: int = 0  # the job's "Restart after a crash (up to N times)"
    crashes: list[dict[str, Any]] = field(default_factory=list)  # each restarted crash (restarts.Crash.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def train_command() -> list[str]:
    """How the CLI is started: this interpreter, unbuffered, running utils/gpt_train.py."""
    return [sys.executable, "-u", str(TRAIN_SCRIPT)]


class _AdoptedProcess:
    """A training process an earlier WebUI started, watched by pid. Its exit status is not ours to collect: an
    `end` event in its progress means it exited 0 (the CLI writes it last), none means it failed."""

    def __init__(self, pid: int, start_ticks: int, progress: Progress) -> None:
        self.pid, self.start_ticks, self.progress = pid, start_ticks, progress

    def alive(self) -> bool:
        return process_start_ticks(self.pid) == self.start_ticks

    def poll(self) -> int | None:
        if self.alive():
            return None
        return 0 if self.progress.end_reason is not None else 1

    def send_signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def kill_group(self) -> None:
        if self.alive():
            _kill_group(self.pid)

    def wait(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.alive():
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)
            time.sleep(0.2)


@dataclass
class _Job:
    """One started subprocess and where its files are."""

    proc: subprocess.Popen | _AdoptedProcess
    argv: list[str]
    progress_path: Path
    log_path: Path
    started: float
    progress: Progress = field(default_factory=Progress)
    offset: int = 0
    stop_requested: float | None = None  # when Stop was sent (time.monotonic())
    force_stopped: bool = False
    ended: float | None = None
    opts: TrainOptions | None = None  # what it was started with (None: taken over from an earlier WebUI)
    record_path: Path | None = None
    max_restarts: int = 0
    crashes: list[Crash] = field(default_factory=list)
    starts_before: int = 0  # start events read before the current process was started
    restart_error: str | None = None  # why the restart after a crash could not be started
    restart_cancelled: bool = False  # Stop was asked while the job waited to restart


def _descendants(pid: int) -> list[int]:
    """Every live process below `pid` (data loader workers, distributed ranks), from /proc's parent pids."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # ended meanwhile
        ppid = int(text[text.rfind(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill_group(pid: int) -> None:
    """SIGKILL the process group the trainer `pid` leads (every process it started, even one whose parent has
    died), and any descendant that left the group (torchrun starts its workers in sessions of their own), found
    before any is killed. A trainer that leads no group (an older WebUI's) loses its descendants alone."""
    strays = [pid, *_descendants(pid)]
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
    for target in strays:
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, signal.SIGKILL)


def process_cmdline(pid: int) -> list[str] | None:
    """The argument list process `pid` was started with (/proc/<pid>/cmdline); None if unreadable."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [arg.decode("utf-8", errors="surrogateescape") for arg in raw.split(b"\0")[:-1]]


class TrainingJobs:
    """Starts, watches and stops the one training subprocess. Safe to call from many threads at once, and one job
    at a time across WebUI processes that share the jobs folder."""

    def __init__(self, command: Sequence[str] | None = None, cwd: Path = ROOT, folder: Path | None = None,
                 stop_grace_s: float = STOP_GRACE_S) -> None:
        self.command = list(command) if command is not None else train_command()
        self.cwd = cwd
        self.folder = Path(folder) if folder is not None else None  # the WebUI's jobs folder (attach())
        self.stop_grace_s = stop_grace_s
        self._lock = threading.Lock()
        self._job: _Job | None = None

    def attach(self, folder: Path) -> None:
        """Keep job records, logs and progress in `folder` (the WebUI's <output>/run/webui), unless set already."""
        if self.folder is None:
            self.folder = Path(folder)

    # --- actions ---------------------------------------------------------------------------------------
    def start(self, opts: TrainOptions, restarts: int = 0) -> dict[str, Any]:
        """Start the CLI with `opts`, unless a job is running; after a crash, start it again from its newest
        checkpoint up to `restarts` times. The status says `accepted` and, if not, why."""
        with self._lock:
            if self._job is not None and self._poll(self._job) in ACTIVE:
                status = self._status(self._job)
                return {**status, "accepted": False, "error": (
                    f"A training job is already {status['state']} (pid {status['pid']}, update {status['step']}"
                    f"/{status['total'] or '?'}): stop it before starting another.")}
            try:
                check_start(opts)
                restarts = check_restarts(restarts)
                job = self._spawn(opts)
            except JobLocked as e:
                return {**idle_status(), "accepted": False, "error": str(e)}
            except (ValueError, OSError) as e:
                previous = self._status(self._job) if self._job else idle_status()
                return {**previous, "accepted": False, "error": str(e)}
            job.max_restarts = restarts
            self._job = job
            threading.Thread(target=self._watch, args=(job,), name="training-job-watcher", daemon=True).start()
            return {**self._status(job), "accepted": True, "error": None}

    def stop(self) -> dict[str, Any]:
        """Ask the running job to save a checkpoint and stop (SIGTERM); it exits 0 after saving."""
        with self._lock:
            job = self._job
            if job is None or self._poll(job) not in ACTIVE:
                status = self._status(job) if job else idle_status()
                return {**status, "accepted": False, "error": "No training job is running."}
            if job.stop_requested is None:
                job.stop_requested = time.monotonic()
                if job.proc.poll() is None:
                    job.proc.send_signal(signal.SIGTERM)
                else:  # crashed and waiting to restart: it is not restarted
                    job.restart_cancelled = True
            return {**self._status(job), "accepted": True, "error": None}

    def force_stop(self) -> dict[str, Any]:
        """SIGKILL the trainer's process group, once Stop has had no answer for the grace period. Checkpoints are
        written atomically: the newest one is intact; updates after it are lost."""
        with self._lock:
            job = self._job
            if job is None or self._poll(job) not in ACTIVE:
                status = self._status(job) if job else idle_status()
                return {**status, "accepted": False, "error": "No training job is running."}
            if not self._may_force(job):
                return {**self._status(job), "accepted": False, "error": (
                    f"Force stop is offered {self.stop_grace_s:.0f} s after Stop gets no answer: press Stop first "
                    f"and give the trainer time to save.")}
            job.force_stopped = True
            if isinstance(job.proc, _AdoptedProcess):
                job.proc.kill_group()
            else:
                _kill_group(job.proc.pid)
            return {**self._status(job), "accepted": True, "error": None}

    def stop_own(self) -> bool:
        """Ask the job this WebUI started to save a checkpoint and stop, without waiting (Ctrl-C on the WebUI); a
        job taken over from an earlier WebUI trains on, for the next one to take over. True while one is ending."""
        job = self._job
        if job is None or isinstance(job.proc, _AdoptedProcess) or not self.status()["running"]:
            return False
        if job.stop_requested is None:
            print("Stopping training: the trainer saves a checkpoint first...", file=sys.stderr)
            self.stop()
        return True

    def shutdown(self, timeout: float | None = None) -> None:
        """When the WebUI itself stops: `stop_own`, then wait for that job to end."""
        if self.stop_own():
            self.wait(timeout)

    def status(self) -> dict[str, Any]:
        """State, step, total, last losses, newest checkpoint, run folder, message (JSON-ready)."""
        with self._lock:
            return self._status(self._job) if self._job else idle_status()

    def history(self) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        """(train losses, eval losses) as (update, loss) pairs, thinned to at most MAX_PLOT_POINTS each."""
        with self._lock:
            if self._job is None:
                return [], []
            self._read_events(self._job)
            return thin(self._job.progress.train_points), thin(self._job.progress.eval_points)

    def log_tail(self, lines: int = 40) -> str:
        """The end of the job's console output, colour codes removed."""
        with self._lock:
            return "" if self._job is None else log_tail(self._job.log_path, lines)

    def adopt_running(self) -> bool:
        """Take over a job still running from an earlier WebUI on this jobs folder (found by its job record),
        unless this manager already has one. True if one was adopted."""
        with self._lock:
            if self._job is not None or self.folder is None:
                return False
            for record in sorted(self.folder.glob("train-*.json"), reverse=True):
                job = self._adoptable(record)
                if job is not None:
                    self._read_events(job)
                    self._job = job
                    return True
            return False

    def _adoptable(self, record: Path) -> _Job | None:
        """The job a record describes, if its process is alive and is the one the record names: same start time,
        same command line (our trainer's), files in our folder. None for anything else."""
        try:
            info = json.loads(record.read_text())
            pid, ticks, argv = int(info["pid"]), int(info["start_ticks"]), [str(a) for a in info["argv"]]
            files = Path(info["progress"]), Path(info["log"])
            started = float(info["started"])
        except (OSError, ValueError, KeyError, TypeError):
            return None  # a record being written or not ours
        if process_start_ticks(pid) != ticks or argv[: len(self.command)] != self.command:
            return None
        if process_cmdline(pid) != argv:
            return None  # the pid now runs something else, or the record was edited
        home = self.folder.resolve()
        if any(f.resolve().parent != home for f in files):
            return None
        progress = Progress()
        return _Job(_AdoptedProcess(pid, ticks, progress), argv, files[0], files[1], started, progress)

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Block until the job ends, restarts after a crash included (for scripts and tests); returns its status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._job is not None:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            self._job.proc.wait(left)
            status = self.status()
            if not status["running"]:
                return status
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("training job", timeout)
            time.sleep(0.1)  # restarting: the watcher starts the next process
        return self.status()

    # --- internals -------------------------------------------------------------------------------------
    def _spawn(self, opts: TrainOptions) -> _Job:
        folder = self.folder if self.folder is not None else Path(opts.output_path) / JOBS_SUBDIR
        folder.mkdir(parents=True, exist_ok=True)
        stem = "train-" + datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
        progress_path, log_path = folder / f"{stem}.jsonl", folder / f"{stem}.log"
        job = _Job(None, [], progress_path, log_path, time.time(), opts=opts, record_path=folder / f"{stem}.json")
        self._launch(job, opts)
        return job

    def _launch(self, job: _Job, opts: TrainOptions) -> None:
        """Start the CLI for `job` (its first process, or a restart: same progress and log files) and write the
        job record a restarted WebUI finds it by."""
        lock = _take_lock(job.progress_path.parent)
        try:
            job.progress_path.touch()
            argv = [*self.command, *opts.to_argv(), "--progress_jsonl", str(job.progress_path)]
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            with open(job.log_path, "ab") as log:  # the child inherits the lock: held while it runs, in any WebUI
                proc = subprocess.Popen(argv, cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT, env=env, pass_fds=(lock,), process_group=0)
        finally:
            os.close(lock)
        job.proc, job.argv, job.ended, job.starts_before = proc, argv, None, job.progress.starts
        record = {"pid": proc.pid, "start_ticks": process_start_ticks(proc.pid), "argv": argv,
                  "progress": str(job.progress_path), "log": str(job.log_path), "started": job.started}
        write_json_atomic(job.record_path, record, indent=1)

    def _watch(self, job: _Job) -> None:
        """Wait for each process of `job`; after a crash, start it again while restarts are left."""
        while True:
            job.proc.wait()
            if not self._restart(job):
                return

    def _restart(self, job: _Job) -> bool:
        """Start `job` again from its run's newest checkpoint if its process crashed and restarts are left (the
        lock may still be held for a moment by the crashed trainer's workers). True once restarted."""
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            with self._lock:
                if self._job is not job or self._poll(job) != "restarting":
                    return False
                opts, source = restart_options(job.opts, job.progress.run_dir)
                crash = Crash(job.proc.poll(), job.progress.step, log_tail(job.log_path, CRASH_LOG_LINES),
                              None if source is None else str(source))
                try:
                    self._launch(job, opts)
                except JobLocked as e:
                    if time.monotonic() > deadline:
                        job.restart_error = str(e)
                        return False
                except (ValueError, OSError) as e:
                    job.restart_error = f"the restart could not be started: {e}"
                    return False
                else:
                    job.crashes.append(crash)
                    return True
            time.sleep(0.5)

    def _restart_due(self, job: _Job, code: int | None) -> bool:
        """The job's process crashed, restarts are left, and nothing (a Stop, a failed restart) rules one out."""
        started = job.progress.starts > job.starts_before
        return (is_crash(code, started, job.stop_requested is not None or job.force_stopped)
                and len(job.crashes) < job.max_restarts and job.restart_error is None and job.opts is not None)

    def _poll(self, job: _Job) -> str:
        self._read_events(job)
        code = job.proc.poll()
        if code is None:
            if job.stop_requested is not None:
                return "stopping"
            return "running" if job.progress.starts > job.starts_before else "starting"
        if job.ended is None:
            job.ended = time.time()
            self._read_events(job)
            code = job.proc.poll()  # an adopted job's status comes from the events just read
        if self._restart_due(job, code):
            return "restarting"
        if job.restart_cancelled:
            return "stopped"
        if code == 0:
            stopped = job.stop_requested is not None or "stop" in (job.progress.end_reason or "")
            return "stopped" if stopped else "finished"
        if job.stop_requested is not None and code == -signal.SIGTERM:
            return "stopped"  # stopped while Python was still starting: nothing had been trained yet
        if job.force_stopped:
            return "stopped"
        return "failed"

    def _may_force(self, job: _Job) -> bool:
        return job.stop_requested is not None and time.monotonic() - job.stop_requested >= self.stop_grace_s

    def _read_events(self, job: _Job) -> None:
        try:
            with open(job.progress_path, "rb") as f:
                f.seek(job.offset)
                data = f.read()
        except FileNotFoundError:
            return
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next read
        job.offset += len(complete)
        for line in complete.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                job.progress.apply(event)

    def _status(self, job: _Job) -> dict[str, Any]:
        state = self._poll(job)
        p = job.progress
        code = job.proc.poll()
        force = state == "stopping" and not job.force_stopped and self._may_force(job)
        run = {**p.run_view(), "eta_s": p.eta_s if state in ACTIVE else None}
        return JobStatus(
            **run, state=state, running=state in ACTIVE, message=_message(state, job, code, force),
            pid=job.proc.pid, returncode=None if isinstance(job.proc, _AdoptedProcess) else code,  # not ours to read
            started=job.started, ended=job.ended,
            log_file=str(job.log_path), progress_file=str(job.progress_path), command=list(job.argv),
            force_stop=force, restarts=len(job.crashes), max_restarts=job.max_restarts,
            crashes=[c.to_dict() for c in job.crashes],
        ).to_dict()


def idle_status() -> dict[str, Any]:
    """The status when no job was started since the WebUI started."""
    return JobStatus(state="idle", running=False,
                     message="No training job has been started since the WebUI started.").to_dict()


class JobLocked(OSError):
    """Another process (another WebUI's training job) holds the jobs folder's lock."""


def _take_lock(folder: Path) -> int:
    """An fd holding the jobs folder's exclusive lock; JobLocked when another training job holds it."""
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise JobLocked(f"A training job started by another WebUI on {folder.parent.parent} is still running (it "
                        f"holds {folder / LOCK_FILE}): stop it there, or wait for it to end.") from None
    return fd


def check_start(opts: TrainOptions) -> None:
    """Refuse, before any process starts, what the CLI would refuse after loading for a while."""
    opts.validate()
    if opts.progress_jsonl:
        raise ValueError("--progress_jsonl is set by the WebUI for each job: leave it out.")
    for name in ("train_csv", "eval_csv"):
        if not Path(getattr(opts, name)).is_file():
            raise ValueError(f"--{name} {getattr(opts, name)} does not exist: prepare or import a dataset first "
                             f"(Data tab), or give the CSV's path.")
    if opts.custom_model and opts.custom_model != LATEST and not Path(opts.custom_model).is_file():
        raise ValueError(f"Checkpoint {opts.custom_model} does not exist: pick one in the list or check the path.")
    if opts.base_model_dir and not Path(opts.base_model_dir).is_dir():
        raise ValueError(f"Base model folder {opts.base_model_dir} does not exist: give the folder holding "
                         f"model.pth, config.json, vocab.json, dvae.pth and mel_stats.pth, or choose the download.")
    if opts.vocab and not Path(opts.vocab).is_file():
        raise ValueError(f"Vocabulary {opts.vocab} does not exist: build one on the Vocabulary tab or clear the box.")


def _message(state: str, job: _Job, code: int | None, force: bool = False) -> str:
    p = job.progress
    if state == "starting" and job.crashes:
        return (f"Restarting after a crash ({ended_text(job.crashes[-1].returncode)} at update "
                f"{job.crashes[-1].step}): restart {len(job.crashes)} of {job.max_restarts}, from "
                f"{Path(job.crashes[-1].resumed_from).name if job.crashes[-1].resumed_from else 'the job start'}...")
    if state == "starting":
        return "Starting: loading the base model and the dataset..."
    if state == "restarting":
        return (f"Training crashed ({ended_text(code)} at update {p.step}): restarting from the run's newest "
                f"checkpoint (restart {len(job.crashes) + 1} of {job.max_restarts}).")
    if job.restart_cancelled:
        return (f"Stopped: training crashed ({ended_text(code)} at update {p.step}) and Stop was asked before it "
                f"restarted; the newest checkpoint is {Path(p.checkpoint).name if p.checkpoint else 'none yet'}.")
    if force:
        last = Path(p.checkpoint).name if p.checkpoint else "none yet"
        return (f"Stop got no answer for {time.monotonic() - job.stop_requested:.0f} s: Force stop kills the "
                f"trainer's process group, the trainer and every process it started (SIGKILL). The newest "
                f"checkpoint ({last}) is intact, since checkpoints are written atomically; updates after it are "
                f"lost.")
    if state == "stopping":
        return "Stop requested: the trainer saves a checkpoint at the next update, then exits."
    if state == "running":
        return p.message
    if state == "failed" and isinstance(job.proc, _AdoptedProcess):
        reason = error_line(job.log_path) or "it ended without its final event (killed?); see the log below."
        return f"Training (pid {job.proc.pid}, started before the WebUI restarted) failed: {reason}"
    if state == "failed":
        reason = error_line(job.log_path) or (f"killed by signal {-code}" if code and code < 0 else "")
        return f"Training failed (exit status {code}): {reason or 'see the log below.'}" + _restart_note(job)
    last = Path(p.checkpoint).name if p.checkpoint else "no checkpoint"
    if state == "stopped" and job.force_stopped:
        return (f"Force-stopped (SIGKILL) at update {p.step}: the newest checkpoint, {last}, is intact; updates "
                f"after it are lost.")
    if state == "stopped":
        return f"Stopped at update {p.step}; saved {last}. Pick it to resume."
    return f"Finished ({p.end_reason or 'completed'}) at update {p.step}; last checkpoint {last}."


def _restart_note(job: _Job) -> str:
    """Why a failed job was not (or no longer) restarted, when it had a restart setting."""
    if job.restart_error:
        return f" Not restarted: {job.restart_error}"
    if job.max_restarts and job.crashes and len(job.crashes) >= job.max_restarts:
        return f" Not restarted: it was restarted {len(job.crashes)} times already, the limit."
    return ""
