"""Start modes decided by checkpoint content: resume, base, extend_vocab, whatever the files are called."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, assert_same_training_state, read_events, train_options

from utils.checkpoints.classify import classify_checkpoint
from utils.checkpoints.keys import CheckpointError


def checkpoint(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / f"checkpoint_{step}.pth"


# --- classification ---------------------------------------------------------------------------------------
def test_released_base_model_classifies_as_base_without_being_modified(tiny_base):
    model = tiny_base / "model.pth"
    before = (model.read_bytes(), model.stat().st_mtime_ns)
    info = classify_checkpoint(model, tiny_base / "vocab.json")
    assert (info.mode, info.step, info.epoch) == ("base", 0, None)
    assert info.checkpoint_text_tokens == info.tokenizer_text_tokens
    assert (model.read_bytes(), model.stat().st_mtime_ns) == before


def test_training_checkpoint_classifies_as_resume_with_its_step_and_epoch(reference_run, tiny_base):
    info = classify_checkpoint(checkpoint(reference_run.run_dir, 6), tiny_base / "vocab.json")
    assert (info.mode, info.step, info.epoch) == ("resume", 6, 1)


def test_classification_ignores_file_names(reference_run, tiny_base, tmp_path):
    """A training checkpoint named like a base model resumes; a base model named like a checkpoint does not."""
    disguised_training = tmp_path / "model.pth"
    os.link(checkpoint(reference_run.run_dir, 5), disguised_training)
    disguised_base = tmp_path / "run" / "training" / "checkpoint_17000.pth"
    disguised_base.parent.mkdir(parents=True)
    shutil.copyfile(tiny_base / "model.pth", disguised_base)
    assert classify_checkpoint(disguised_training).mode == "resume"
    assert classify_checkpoint(disguised_training).step == 5
    assert classify_checkpoint(disguised_base).mode == "base"


@pytest.mark.parametrize(
    "content",
    [b"", b"\x00" * 10, os.urandom(4096)],
    ids=["empty", "zeros", "random"],
)
def test_unreadable_files_raise_value_error_naming_the_file(tmp_path, content):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"bad\.pth"):
        classify_checkpoint(path)


def test_truncated_checkpoint_is_refused(tiny_base, tmp_path):
    path = tmp_path / "truncated.pth"
    path.write_bytes((tiny_base / "model.pth").read_bytes()[: 1 << 20])
    with pytest.raises(CheckpointError, match=r"truncated\.pth"):
        classify_checkpoint(path)


def test_bare_tensor_and_foreign_dict_are_not_xtts_checkpoints(tmp_path):
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    torch.save({"model": {"layer.weight": torch.zeros(2)}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match=r"tensor\.pth.*bare tensor"):
        classify_checkpoint(tmp_path / "tensor.pth")
    with pytest.raises(CheckpointError, match=r"other\.pth.*not an XTTS checkpoint"):
        classify_checkpoint(tmp_path / "other.pth")


class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_would_run_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "code-ran"
    torch.save({"model": _RunsCode(str(marker))}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match=r"evil\.pth"):
        classify_checkpoint(tmp_path / "evil.pth")
    assert not marker.exists()


def test_missing_path_and_folder_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        classify_checkpoint(tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match="is a folder"):
        classify_checkpoint(tmp_path)


# --- resume a training checkpoint ---------------------------------------------------------------------------
def test_resume_restores_step_epoch_lr_scheduler_and_adam_moments(reference_run, train, tmp_path):
    source = checkpoint(reference_run.run_dir, 5)
    result = train(tmp_path, custom_model=str(source), max_steps=5)
    assert (result.mode, result.start_step, result.step) == ("resume", 5, 5)
    assert result.run_dir != reference_run.run_dir  # an older checkpoint: a new run folder, source untouched
    start = read_events(result.run_dir, "start")[0]
    assert (start["step"], start["epoch"]) == (5, 1)
    saved = json.loads((result.run_dir / "run.json").read_text())["starts"][0]
    assert saved["source"] == str(source.resolve())
    assert_same_training_state(source, result.last_checkpoint)


def test_resume_of_newest_checkpoint_continues_in_its_own_run_folder(train, tmp_path):
    first = train(tmp_path, max_steps=2)
    second = train(tmp_path, custom_model=str(first.last_checkpoint), max_steps=3)
    assert second.run_dir == first.run_dir
    assert (second.start_step, second.step) == (2, 3)
    assert sorted(p.name for p in first.run_dir.glob("checkpoint_*.pth")) == ["checkpoint_2.pth", "checkpoint_3.pth"]


def test_resume_continues_exactly_as_the_uninterrupted_run(reference_run, train, tmp_path):
    result = train(tmp_path, custom_model=str(checkpoint(reference_run.run_dir, 3)))
    assert result.step == 8
    assert_same_training_state(checkpoint(reference_run.run_dir, 8), result.last_checkpoint)


def test_cli_prints_what_was_restored(reference_run, tiny_base, tiny_dataset, tmp_path):
    source = checkpoint(reference_run.run_dir, 6)
    proc = run_cli(tiny_base, tiny_dataset, tmp_path, "--custom_model", str(source), "--max_steps", "6")
    assert proc.returncode == 0, proc.stderr
    assert "Resuming from checkpoint_6.pth: step 6, epoch 1, learning rate 5e-06" in proc.stdout


def test_resume_from_a_plain_coqui_recipe_checkpoint(coqui_recipe_checkpoint, train, tmp_path):
    """coqui-tts-trainer 0.4 names a save_step checkpoint one lower than the updates it holds."""
    path, updates = coqui_recipe_checkpoint
    info = classify_checkpoint(path)
    assert (info.mode, info.step) == ("resume", updates)
    result = train(tmp_path, custom_model=str(path), max_steps=updates + 1)
    assert (result.mode, result.start_step, result.step) == ("resume", updates, updates + 1)
    saved = torch.load(result.last_checkpoint, weights_only=True, mmap=True)
    source = torch.load(path, weights_only=True, mmap=True)
    first_param = next(iter(source["optimizer"][0]["state"]))
    assert int(saved["optimizer"][0]["state"][first_param]["step"]) == updates + 1


# --- base: weights only, the same vocabulary ----------------------------------------------------
def test_base_start_loads_weights_with_a_fresh_optimizer(tiny_base, tiny_dataset, train, tmp_path):
    """Every weight of the start is the base's (the model is built without random initialisation): XTTS's from
    model.pth, the DVAE's from dvae.pth, the mel extractors' buffers as an initialised build computes them."""
    from utils.base_model.folder import check_base_folder
    from utils.training.config import build_config, build_model

    result = train(tmp_path, max_steps=0)
    assert (result.mode, result.start_step, result.step) == ("base", 0, 0)
    saved = torch.load(result.last_checkpoint, weights_only=True, mmap=True)
    base = torch.load(tiny_base / "model.pth", weights_only=False, mmap=True)["model"]
    dvae = torch.load(tiny_base / "dvae.pth", weights_only=True, mmap=True)
    folder = check_base_folder(tiny_base)
    built = build_model(build_config(train_options(tiny_base, tiny_dataset, tmp_path / "x"), folder,
                                     folder.vocab_path, tmp_path / "x"), folder.vocab_path).state_dict()
    expected = {**{f"xtts.{k}": v for k, v in base.items()}, **{f"dvae.{k}": v for k, v in dvae.items()}}
    expected.update({k: v for k, v in built.items() if k.startswith("torch_mel_spectrogram")})
    assert saved["model"].keys() == expected.keys()
    assert [k for k, v in saved["model"].items() if not torch.equal(v, expected[k])] == []
    assert saved["optimizer"][0]["state"] == {}


def test_restart_uses_a_training_checkpoint_as_weights_only(reference_run, train, tmp_path):
    source = checkpoint(reference_run.run_dir, 4)
    result = train(tmp_path, custom_model=str(source), restart=True, max_steps=1)
    assert (result.mode, result.start_step, result.step) == ("base", 0, 1)
    saved = torch.load(result.last_checkpoint, weights_only=True, mmap=True)
    assert saved["epoch"] == 0


def test_max_steps_already_reached_saves_the_restored_state(reference_run, train, tmp_path):
    source = checkpoint(reference_run.run_dir, 6)
    result = train(tmp_path, custom_model=str(source), max_steps=4)
    assert result.step == 6
    assert_same_training_state(source, result.last_checkpoint)


# --- extended vocabulary: weights only, a new language's tokens -------------------------------------------------------
AMHARIC = ["ሰላም እንዴት ነህ", "እኔ ደህና ነኝ አመሰግናለሁ", "ይህ የሙከራ ዓረፍተ ነገር ነው", "ዛሬ ጥሩ ቀን ነው"]


@pytest.fixture(scope="module")
def amharic_setup(tiny_base, tiny_dataset, tmp_path_factory):
    """An Amharic copy of the dataset and an extended vocabulary built from it."""
    from utils.vocabulary.extend import extend_vocabulary

    folder = tmp_path_factory.mktemp("amharic")
    for name in ("metadata_train.csv", "metadata_eval.csv"):
        lines = (tiny_dataset.folder / name).read_text(encoding="utf-8").splitlines()
        rows = [lines[0]] + [
            f"{line.split('|')[0]}|{AMHARIC[i % len(AMHARIC)]}|{line.split('|')[2]}" for i, line in enumerate(lines[1:])
        ]
        (folder / name).write_text("\n".join(rows) + "\n", encoding="utf-8")
    (folder / "wavs").symlink_to(tiny_dataset.folder / "wavs")
    vocab = extend_vocabulary(tiny_base / "vocab.json", AMHARIC, "am", folder / "vocab_am.json")
    return folder, Path(vocab.path)


def test_extended_vocabulary_expands_rows_by_token_string_then_trains(amharic_setup, tiny_base, train, tmp_path):
    folder, vocab = amharic_setup
    info = classify_checkpoint(tiny_base / "model.pth", vocab)
    assert info.mode == "extend_vocab" and info.tokenizer_text_tokens > info.checkpoint_text_tokens
    result = train(tmp_path, custom_model=None, vocab=str(vocab), language="am", max_steps=1,
                   train_csv=str(folder / "metadata_train.csv"), eval_csv=str(folder / "metadata_eval.csv"))
    assert (result.mode, result.start_step, result.step) == ("extend_vocab", 0, 1)
    manifest = json.loads((result.run_dir / "expanded_base.json").read_text())
    assert manifest["new_rows"] == info.tokenizer_text_tokens
    expanded = torch.load(result.run_dir / "expanded_base.pth", weights_only=True, mmap=True)["model"]
    base = torch.load(tiny_base / "model.pth", weights_only=False, mmap=True)["model"]
    old_vocab = json.loads((tiny_base / "vocab.json").read_text())["model"]["vocab"]
    new_vocab = json.loads(vocab.read_text())["model"]["vocab"]
    key = next(k for k in expanded if k.endswith("gpt.text_embedding.weight"))
    for token in ("the", "a", "[SPACE]"):
        if token in old_vocab and token in new_vocab:
            assert torch.equal(expanded[key][new_vocab[token]], base["gpt.text_embedding.weight"][old_vocab[token]])
    assert classify_checkpoint(result.last_checkpoint).mode == "resume"


def test_resuming_an_extended_vocabulary_run_is_a_plain_resume(amharic_setup, train, tmp_path):
    folder, vocab = amharic_setup
    csvs = dict(train_csv=str(folder / "metadata_train.csv"), eval_csv=str(folder / "metadata_eval.csv"))
    first = train(tmp_path, vocab=str(vocab), language="am", max_steps=2, **csvs)
    expanded_mtime = (first.run_dir / "expanded_base.pth").stat().st_mtime_ns
    second = train(tmp_path, custom_model=str(first.last_checkpoint), language="am", max_steps=3, **csvs)
    assert (second.mode, second.start_step, second.step, second.run_dir) == ("resume", 2, 3, first.run_dir)
    assert (first.run_dir / "expanded_base.pth").stat().st_mtime_ns == expanded_mtime
    assert len(list(tmp_path.rglob("expanded_base.pth"))) == 1


def test_resume_with_another_vocabulary_is_refused(amharic_setup, reference_run, train, tmp_path):
    _, vocab = amharic_setup
    with pytest.raises(ValueError, match="--vocab"):
        train(tmp_path, custom_model=str(checkpoint(reference_run.run_dir, 2)), vocab=str(vocab))


# --- CLI ---------------------------------------------------------------------------------------------------
def run_cli(base, dataset, output, *extra: str, timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "utils/gpt_train.py", "--train_csv", str(dataset.train_csv), "--eval_csv",
           str(dataset.eval_csv), "--output_path", str(output), "--base_model_dir", str(base), *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_cli_refuses_a_bad_checkpoint_with_one_sentence(tiny_base, tiny_dataset, tmp_path):
    bad = tmp_path / "broken.pth"
    bad.write_bytes(os.urandom(100))
    proc = run_cli(tiny_base, tiny_dataset, tmp_path / "out", "--custom_model", str(bad))
    assert proc.returncode != 0
    assert "broken.pth" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_refuses_bad_option_before_loading_anything(tiny_base, tiny_dataset, tmp_path):
    proc = run_cli(tiny_base, tiny_dataset, tmp_path / "out", "--batch_size", "0")
    assert proc.returncode != 0 and "--batch_size" in proc.stderr


def test_print_step_must_be_positive():
    from utils.options import TrainOptions

    opts = TrainOptions(train_csv="t.csv", eval_csv="e.csv", output_path="out", print_step=0)
    with pytest.raises(ValueError, match="--print_step must be between 1 and"):
        opts.validate()


# --- --dry_run: the plan, printed, with nothing touched ------------------------------------------------------
PLAN_KEYS = {"mode", "source", "step", "epoch", "vocab", "run_dir", "continues_run"}


def tree_state(*folders: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under `folders` with its size and mtime: what a dry run must leave as it was."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for f in folders for p in [f, *f.rglob("*")]}


def dry_run(base, dataset, output, *extra: str) -> tuple[str, dict]:
    """The human line and the JSON object of `--dry_run` for the same command."""
    human = run_cli(base, dataset, output, "--dry_run", *extra, timeout=120)
    machine = run_cli(base, dataset, output, "--dry_run", "--json", *extra, timeout=120)
    assert human.returncode == 0 and machine.returncode == 0, human.stderr + machine.stderr
    assert len(human.stdout.strip().splitlines()) == 1 and len(machine.stdout.strip().splitlines()) == 1
    return human.stdout.strip(), json.loads(machine.stdout)


def test_dry_run_of_a_resume_prints_the_plan_and_touches_nothing(reference_run, tiny_base, tiny_dataset, tmp_path):
    source = reference_run.last_checkpoint
    before = tree_state(reference_run.run_dir, tiny_base)
    line, plan = dry_run(tiny_base, tiny_dataset, tmp_path / "out", "--custom_model", str(source))
    assert set(plan) == PLAN_KEYS
    epoch = classify_checkpoint(source).epoch
    assert (plan["mode"], plan["step"], plan["epoch"], plan["continues_run"]) == ("resume", 8, epoch, True)
    assert (plan["source"], plan["run_dir"]) == (str(source), str(reference_run.run_dir))
    assert plan["vocab"] == str(reference_run.run_dir / "vocab.json")
    assert line == f"Resume {source.name}: step 8, epoch {epoch} (continues in its own run folder)"
    assert tree_state(reference_run.run_dir, tiny_base) == before
    assert not (tmp_path / "out").exists()


def test_dry_run_of_a_base_start_and_of_a_restart(reference_run, tiny_base, tiny_dataset, tmp_path):
    line, plan = dry_run(tiny_base, tiny_dataset, tmp_path / "out")
    assert plan == {"mode": "base", "source": str(tiny_base / "model.pth"), "step": 0, "epoch": 0,
                    "vocab": str(tiny_base / "vocab.json"), "run_dir": None, "continues_run": False}
    assert line == "Fine-tune from model.pth: weights only, fresh optimizer, step 0 (a new run folder)"
    source = checkpoint(reference_run.run_dir, 4)
    line, plan = dry_run(tiny_base, tiny_dataset, tmp_path / "out", "--custom_model", str(source), "--restart")
    assert (plan["mode"], plan["step"], plan["run_dir"]) == ("base", 0, None)
    assert line.startswith(f"Start over from {source.name}: weights only")
    _, plan = dry_run(tiny_base, tiny_dataset, tmp_path / "out", "--custom_model", str(source))
    assert (plan["mode"], plan["step"], plan["run_dir"], plan["continues_run"]) == ("resume", 4, None, False)
    assert not (tmp_path / "out").exists()


def test_dry_run_of_an_extended_vocabulary(amharic_setup, tiny_base, tiny_dataset, tmp_path):
    _, vocab = amharic_setup
    line, plan = dry_run(tiny_base, tiny_dataset, tmp_path / "out", "--vocab", str(vocab), "--language", "am")
    assert (plan["mode"], plan["vocab"], plan["step"]) == ("extend_vocab", str(vocab), 0)
    assert line.startswith("Fine-tune from model.pth with an extended vocabulary: text rows ")
    assert not (tmp_path / "out").exists()


def test_dry_run_refuses_a_bad_checkpoint_in_one_sentence(tiny_base, tiny_dataset, tmp_path):
    proc = run_cli(tiny_base, tiny_dataset, tmp_path / "out", "--dry_run", "--custom_model", str(tmp_path / "no.pth"))
    assert proc.returncode == 1 and "no.pth does not exist" in proc.stderr and "Traceback" not in proc.stderr
