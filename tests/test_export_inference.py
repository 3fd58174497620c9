"""Export a checkpoint to ready/, classify the export as a base, load it (and a checkpoint) and synthesise."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import soundfile as sf
import torch

from utils.checkpoints.classify import classify_checkpoint
from utils.voice.export import export_model, zip_export
from utils.voice.inference import load_voice, synthesize


@pytest.fixture(scope="module")
def export(reference_run, tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("ready") / "ready"
    return export_model(reference_run.last_checkpoint, out, reference_wav=tiny_dataset.clips[0])


def test_export_holds_inference_weights_only(export, reference_run):
    saved = torch.load(export.model, weights_only=True, mmap=True)
    assert "optimizer" not in saved and "scheduler" not in saved
    assert not [k for k in saved["model"] if k.startswith(("dvae.", "xtts.", "torch_mel"))]
    source = torch.load(reference_run.last_checkpoint, weights_only=True, mmap=True)["model"]
    for key, value in saved["model"].items():
        assert torch.equal(value, source["xtts." + key])
    assert {p.name for p in export.folder.iterdir()} == {"model.pth", "config.json", "vocab.json", "reference.wav"}
    assert export.model.stat().st_size < reference_run.last_checkpoint.stat().st_size / 2


def test_export_classifies_as_base_and_seeds_a_new_fine_tune(export, train, tmp_path):
    assert classify_checkpoint(export.model, export.vocab).mode == "base"
    result = train(tmp_path, custom_model=str(export.model), max_steps=1)
    assert (result.mode, result.start_step, result.step) == ("base", 0, 1)


def test_export_zip_contains_the_folder(export, tmp_path):
    archive = zip_export(export.folder, tmp_path / "voice.zip")
    with zipfile.ZipFile(archive) as zf:
        assert sorted(zf.namelist()) == sorted(f"ready/{n}" for n in
                                               ("model.pth", "config.json", "vocab.json", "reference.wav"))


@pytest.mark.parametrize("which", ["export", "checkpoint"])
def test_synthesis_round_trip(export, reference_run, tiny_dataset, tmp_path, which):
    """Noise on the tiny model, but the real XTTS inference path: conditioning, GPT generation, HiFi-GAN."""
    path = export.folder if which == "export" else reference_run.last_checkpoint
    voice = load_voice(path)
    wav, rate = synthesize(voice, "the quick brown fox.", tiny_dataset.clips[1], "en", out_path=tmp_path / "out.wav",
                           max_new_tokens=40)
    assert rate == 24000 and wav.ndim == 1 and wav.size > 0 and np.isfinite(wav).all()
    written, written_rate = sf.read(tmp_path / "out.wav")
    assert written_rate == 24000 and written.shape == wav.shape


def test_synthesis_refuses_empty_text_and_missing_reference(export, tiny_dataset, tmp_path):
    voice = load_voice(export.folder)
    with pytest.raises(ValueError, match="empty"):
        synthesize(voice, "  ", tiny_dataset.clips[0], "en")
    with pytest.raises(ValueError, match=r"nowhere\.wav"):
        synthesize(voice, "hello", tmp_path / "nowhere.wav", "en")
