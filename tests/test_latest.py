"""`--custom_model latest`: one command line for the first launch and every restart. It picks, in the run folder
whose newest complete checkpoint was written last, the checkpoint with the most optimizer updates (never
best_model.pth, never a partial file); with none yet, training starts from the base."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from utils.checkpoints.latest import latest_checkpoint
from utils.training.cli import main


def small_checkpoint(path: Path, updates: int, mtime: float) -> Path:
    """A real (tiny) training checkpoint in our format: a GPT text embedding and optimizer state of `updates`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    optimizer = {"state": {0: {"step": torch.tensor(float(updates))}}, "param_groups": [{"params": [0]}]}
    torch.save({"model": {"xtts.gpt.text_embedding.weight": torch.zeros(4, 2)}, "optimizer": [optimizer],
                "step": updates, "epoch": 0, "xtts_ft_format": 1}, path)
    os.utime(path, (mtime, mtime))
    return path


def test_latest_is_the_most_updates_in_the_run_written_last(tmp_path):
    runs = tmp_path / "run" / "training"
    assert latest_checkpoint(tmp_path / "missing") is None and latest_checkpoint(tmp_path) is None
    small_checkpoint(runs / "old" / "checkpoint_5.pth", 5, 100)
    small_checkpoint(runs / "old" / "best_model.pth", 9, 900)  # newest file, but never a restart's source
    assert latest_checkpoint(tmp_path) == runs / "old" / "checkpoint_5.pth"
    small_checkpoint(runs / "new" / "checkpoint_3.pth", 3, 200)
    small_checkpoint(runs / "new" / "checkpoint_2.pth", 2, 300)  # written after 3 (a copy, a clock): fewer updates
    small_checkpoint(runs / "new" / "checkpoint_4.pth.tmp", 4, 950)  # a write not yet renamed into place
    assert latest_checkpoint(tmp_path) == runs / "new" / "checkpoint_3.pth"
    small_checkpoint(runs / "new" / "checkpoint_1.pth", 4, 150)  # renamed by hand: its content counts, not its name
    assert latest_checkpoint(tmp_path) == runs / "new" / "checkpoint_1.pth"


def dry_run_json(capsys, tiny_base, tiny_dataset, output: Path) -> dict:
    assert main(["--train_csv", str(tiny_dataset.train_csv), "--eval_csv", str(tiny_dataset.eval_csv),
                 "--output_path", str(output), "--base_model_dir", str(tiny_base), "--custom_model", "latest",
                 "--dry_run", "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_dry_run_shows_what_latest_resolved_to(capsys, tiny_base, tiny_dataset, tmp_path):
    first = dry_run_json(capsys, tiny_base, tiny_dataset, tmp_path)
    assert (first["mode"], first["source"], first["latest_found"]) == ("base", str(tiny_base / "model.pth"), False)
    run = tmp_path / "run" / "training" / "GPT_XTTS_FT-x"
    small_checkpoint(run / "checkpoint_3.pth", 3, 200)
    (run / "run.json").write_text("{}")
    again = dry_run_json(capsys, tiny_base, tiny_dataset, tmp_path)
    assert (again["mode"], again["source"], again["step"], again["latest_found"], again["run_dir"]) == (
        "resume", str(run / "checkpoint_3.pth"), 3, True, str(run))
    assert not list(tmp_path.rglob("*.lock")) and sorted(p.name for p in run.iterdir()) == ["checkpoint_3.pth",
                                                                                          "run.json"]


def test_the_webui_api_accepts_latest(tmp_path, tiny_base):
    """"latest" is passed to the CLI as it is, not taken for a path (not even under the shared UI's path rule)."""
    from utils.webui.api import api_start_training
    from utils.webui.context import WebUIContext
    from utils.webui.jobs import TrainingJobs
    from utils.webui.paths import WebUIConfig

    out = tmp_path / "out"
    out.mkdir()
    for name in ("train.csv", "eval.csv"):
        (out / name).write_text("audio_file|text|speaker_name\n")
    cli = tmp_path / "cli.py"
    cli.write_text("import sys\n")  # a stand-in CLI: this test is about what it is given
    config = WebUIConfig(output=out, base_dir=tiny_base, restrict_paths=True)
    ctx = WebUIContext.create(config, TrainingJobs(command=[sys.executable, str(cli)], cwd=tmp_path))
    status = api_start_training(ctx, {"custom_model": "latest", "train_csv": str(out / "train.csv"),
                                      "eval_csv": str(out / "eval.csv")})
    assert status["accepted"], status
    assert status["command"][status["command"].index("--custom_model") + 1] == "latest"
