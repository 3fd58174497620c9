"""Vocabulary expansion — time to write the expanded base (`expand_base_checkpoint`: text embedding and
text head rows mapped by token string, new rows initialised, written atomically) for the work space's base
model and a vocabulary extended by a few thousand tokens for a new language; versus the floor any expansion
pays, reading the same base with a plain `torch.load` and writing it back with `torch.save`.

The new language is synthetic Amharic-script text (deterministic pseudo-words); `extend_vocabulary` adds its
characters and BPE merges (3000 new tokens at full size, 400 at tiny), timed too. Each arm runs in a fresh
process; wall time and peak RSS added by the call are measured, arms interleaved and repeated.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/bench_vocab_expansion.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common

SCRIPT = Path(__file__).resolve()
LANGUAGE = "am"
NEW_TOKENS = {"tiny": 400, "full": 3000}


def new_language_texts(seed: int = 1, lines: int = 4000) -> list[str]:
    """Transcripts in Ethiopic script: pseudo-words over ~340 syllables, frequent ones more often (Zipf-like)."""
    import random
    import unicodedata

    rng = random.Random(seed)
    syllables = [chr(c) for c in range(0x1200, 0x135B) if unicodedata.category(chr(c)) == "Lo"]
    weights = [1 / (i + 1) for i in range(len(syllables))]
    lexicon = ["".join(rng.choices(syllables, weights, k=rng.randint(2, 5))) for _ in range(12000)]
    return [" ".join(rng.choice(lexicon) for _ in range(10)) + " ።" for _ in range(lines)]


def probe(argv: list[str]) -> None:
    arm, model, vocab, new_vocab, out_dir, new_tokens = argv
    import torch

    from utils.vocabulary.expand import expand_base_checkpoint
    from utils.vocabulary.extend import extend_vocabulary

    out = Path(out_dir)
    if arm == "extend":
        texts = new_language_texts()
        ext, m = common.measure_call(lambda: extend_vocabulary(vocab, texts, LANGUAGE, new_vocab,
                                                                  max_new_tokens=int(new_tokens)))
        m["added"] = ext.new_text_tokens - ext.old_text_tokens
    elif arm == "expand":
        _, m = common.measure_call(lambda: expand_base_checkpoint(model, vocab, new_vocab, out))
    else:
        def copy() -> None:
            state = torch.load(model, map_location="cpu", weights_only=True)
            torch.save(state, out / "copy.pth")

        _, m = common.measure_call(copy)
    common.emit_probe(m)


def measure(ws: common.Workspace, repeats: int) -> list[common.Row]:
    work = ws.scratch("vocab")
    new_vocab = work / "vocab_am.json"
    args = [str(ws.base_model), str(ws.vocab), str(new_vocab)]
    try:
        common.warm(ws.base_model)
        note = common.cache_note([ws.base_model])
        extend = common.run_probe(SCRIPT, ["extend", *args, str(work), str(NEW_TOKENS[ws.size])])
        ours, plain = [], []
        for _ in range(repeats):
            for arm, runs in (("expand", ours), ("copy", plain)):
                out = work / arm
                out.mkdir()
                runs.append(common.run_probe(SCRIPT, [arm, *args, str(out), "0"]))
                shutil.rmtree(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    size_gb = ws.base_model.stat().st_size / common.GB
    t_ours, t_plain = common.median([r["seconds"] for r in ours]), common.median([r["seconds"] for r in plain])
    m_ours = common.median([r["peak_rss_added"] for r in ours]) / common.GB
    m_plain = common.median([r["peak_rss_added"] for r in plain]) / common.GB
    notes = f"{size_gb:.2f} GB base model.pth, {note}; +{extend['added']} text tokens; median of {repeats}"
    return [
        common.Row(f"vocab: extend_vocabulary (+{extend['added']} tokens)", extend["seconds"], None, "s", "—", None,
                   "4000 synthetic Amharic-script transcripts"),
        common.Row("vocab: write the expanded base", t_ours, t_plain, "s", "—", None, notes,
                   "torch.load+torch.save"),
        common.Row("vocab: expanded base, peak RSS added", m_ours, m_plain, "GB", "—", None, notes,
                   "torch.load+torch.save"),
    ]


def main(argv: list[str] | None = None) -> int:
    return common.script_main(__doc__, argv, lambda ws, args: measure(ws, args.repeats or 2), probe=probe)


if __name__ == "__main__":
    sys.exit(main())
