"""The metadata reader behind classify/list: the same answers as a full weights_only load, without its cost."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from utils.checkpoints.classify import classify_checkpoint, info_from_state
from utils.checkpoints.keys import (
    ALLOWED_CONFIG_NAMES,
    KEY_MODEL,
    KEY_OPTIMIZER,
    KEY_STEP,
    KEY_VOCAB_SHA,
    CheckpointError,
)
from utils.checkpoints.meta import ObjectRecord, TensorMeta
from utils.checkpoints.read import _released_xtts_v2_globals, read_checkpoint, read_checkpoint_meta


def _sources(tiny_base: Path, reference_run, coqui_recipe_checkpoint, tmp_path: Path) -> dict[str, Path]:
    plain = tmp_path / "coqui_layout_model.pth"  # what coqui itself writes: config as a dict, no optimizer
    torch.save({"config": {"model": "xtts"}, "model": read_checkpoint(tiny_base / "model.pth")["model"]}, plain)
    return {
        "released base (pickled XttsConfig, legacy module names)": tiny_base / "model.pth",
        "our training checkpoint": reference_run.run_dir / "checkpoint_6.pth",
        "coqui recipe checkpoint (step from the optimizer's tensors)": coqui_recipe_checkpoint[0],
        "coqui-layout weights": plain,
    }


def test_classify_agrees_with_a_full_load_for_every_kind_of_file(tiny_base, reference_run, coqui_recipe_checkpoint,
                                                                 tmp_path):
    vocab = tiny_base / "vocab.json"
    for kind, path in _sources(tiny_base, reference_run, coqui_recipe_checkpoint, tmp_path).items():
        full = info_from_state(path, read_checkpoint(path), vocab)
        assert classify_checkpoint(path, vocab) == full, kind
    assert classify_checkpoint(coqui_recipe_checkpoint[0]).step == coqui_recipe_checkpoint[1]


def test_every_tensor_is_described_with_its_real_shape_and_dtype(reference_run):
    path = reference_run.run_dir / "checkpoint_6.pth"
    meta, full = read_checkpoint_meta(path), read_checkpoint(path)
    assert meta[KEY_MODEL].keys() == full[KEY_MODEL].keys()
    for key, tensor in full[KEY_MODEL].items():
        described = meta[KEY_MODEL][key]
        assert isinstance(described, TensorMeta)
        assert (described.shape, described.dtype) == (tuple(tensor.shape), tensor.dtype), key
    steps = [(s["step"], full[KEY_OPTIMIZER][0]["state"][pid]["step"])
             for pid, s in meta[KEY_OPTIMIZER][0]["state"].items()]
    assert steps and all(float(m) == float(t) == 6 for m, t in steps)
    assert meta[KEY_STEP] == 6 and meta[KEY_VOCAB_SHA] == full[KEY_VOCAB_SHA]


def test_pickled_configs_are_records_and_coqui_is_not_imported(tiny_base):
    import subprocess
    import sys

    code = ("import sys; from utils.checkpoints.read import read_checkpoint_meta; "
            f"d = read_checkpoint_meta({str(tiny_base / 'model.pth')!r}); "
            "print(type(d['config']).__name__, 'TTS' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent).stdout.split()
    assert out == ["XttsConfig", "False"]
    config = read_checkpoint_meta(tiny_base / "model.pth")["config"]
    assert isinstance(config, ObjectRecord) and config.state["model_args"].state["gpt_layers"] == 2


def test_allowed_config_names_match_the_classes_a_full_load_allows():
    names = set()
    for entry in _released_xtts_v2_globals():
        _cls, name = entry if isinstance(entry, tuple) else (entry, f"{entry.__module__}.{entry.__qualname__}")
        names.add(name)
    assert names == set(ALLOWED_CONFIG_NAMES)


class _Foreign:
    """An ordinary class of someone's code: a weights_only load refuses to rebuild it."""

    def __init__(self) -> None:
        self.x = 1


class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("where", ["top", "nested in optimizer state"])
def test_foreign_objects_are_refused_like_a_full_load_and_never_run(tiny_base, tmp_path, where):
    marker = tmp_path / "ran"
    weights = read_checkpoint(tiny_base / "model.pth")["model"]
    evil = {"step": _RunsCode(str(marker))}
    state = {"model": weights, "optimizer": [{"state": {0: evil}, "param_groups": []}], "x": _Foreign()}
    if where == "top":
        state = {"model": weights, "config": _RunsCode(str(marker))}
    path = tmp_path / "foreign.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"foreign\.pth was refused") as meta_error:
        read_checkpoint_meta(path)
    with pytest.raises(CheckpointError, match=r"foreign\.pth was refused"):
        read_checkpoint(path)
    assert "posix.system" in str(meta_error.value) or "os.system" in str(meta_error.value)
    assert not marker.exists()


def test_a_zip_without_a_pickle_is_unreadable(tmp_path):
    import zipfile

    path = tmp_path / "archive.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/version", "3\n")
    with pytest.raises(CheckpointError, match=r"archive\.pth is not a readable PyTorch file"):
        classify_checkpoint(path)


def test_legacy_non_zip_files_fall_back_to_a_full_load(tiny_base, tmp_path):
    path = tmp_path / "legacy.pth"
    weights = read_checkpoint(tiny_base / "model.pth")["model"]
    torch.save({"model": dict(weights)}, path, _use_new_zipfile_serialization=False)
    assert classify_checkpoint(path, tiny_base / "vocab.json").mode == "base"


class _AsksForGigabytes:
    def __reduce__(self):
        return (bytearray, (1_500_000_000,))


@pytest.mark.parametrize("legacy", [False, True])
def test_a_pickle_that_asks_for_gigabytes_is_refused_before_any_load(tiny_base, tmp_path, legacy):
    """bytearray(n) is allowed by torch's weights_only loader (protocol 2, torch.save's own: a full load would
    build it): the capped reader refuses it first, in both formats (the memory bound through the CLI is shown in
    tests/test_security.py)."""
    import resource

    path = tmp_path / "hostile.pth"
    weights = read_checkpoint(tiny_base / "model.pth")["model"]
    torch.save({"model": dict(weights), "x": _AsksForGigabytes()}, path, pickle_protocol=2,
               _use_new_zipfile_serialization=not legacy)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for read in (read_checkpoint_meta, read_checkpoint, classify_checkpoint):
        with pytest.raises(CheckpointError, match=r"hostile\.pth was refused: its structure is not a checkpoint's"):
            read(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 1_000_000  # KB: nothing near 1.5 GB


def test_a_storage_larger_than_its_record_is_refused(tmp_path):
    import zipfile

    path = tmp_path / "small.pth"
    torch.save({"model": {"gpt.text_embedding.weight": torch.zeros(4, 2)}}, path)
    with zipfile.ZipFile(path) as z:
        entries = {name: z.read(name) for name in z.namelist()}
    record = next(n for n in entries if "/data/" in n)
    entries[record] = entries[record][:8]  # 32 bytes declared, 8 there
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    with pytest.raises(CheckpointError, match="declares 32 bytes, its record holds 8"):
        classify_checkpoint(path)
