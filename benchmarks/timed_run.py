"""Run a training script with coqui's `Trainer.format_batch` timed, for the training-loop benchmark.

`format_batch` is the model's own batch preparation (mel spectrograms and DVAE codes for XTTS): together with
the `step_time` coqui logs (forward, backward, optimizer) it is the model's work in an update, and the rest of an
update is the loop's. Both arms run through this launcher, so the instrument is the same for both.
Usage: python benchmarks/timed_run.py TIMES_JSON SCRIPT [ARGS...]; TIMES_JSON gets the training calls' seconds.
"""

from __future__ import annotations

import atexit
import json
import runpy
import sys
import time
from pathlib import Path


def main() -> None:
    times_file, script, *args = sys.argv[1:]
    from trainer.trainer import Trainer

    format_batch, train_step = Trainer.format_batch, Trainer.train_step
    times: list[float] = []
    in_train_step = False  # eval batches are formatted too, but are not part of an update

    def timed_format_batch(self, batch):
        start = time.time()
        result = format_batch(self, batch)
        if in_train_step:
            times.append(time.time() - start)
        return result

    def flagged_train_step(self, *args, **kwargs):
        nonlocal in_train_step
        in_train_step = True
        try:
            return train_step(self, *args, **kwargs)
        finally:
            in_train_step = False

    Trainer.format_batch, Trainer.train_step = timed_format_batch, flagged_train_step
    atexit.register(lambda: Path(times_file).write_text(json.dumps(times)))
    sys.argv = [script, *args]
    sys.path[0] = str(Path(script).resolve().parent)  # as `python SCRIPT` would have it
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
