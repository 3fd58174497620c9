"""Text normalisation for comparing what was said with what should have been said, and the character error
rate (CER) built on it. Pure Python: no model, no dependency."""

from __future__ import annotations

import unicodedata

# Dropped without a trace, so that "don't" and "dont" agree; other punctuation and symbols become a space,
# so that "well-known" and "well known" agree.
_APOSTROPHES = frozenset("'\u2019\u02bc\u2018`\u00b4")


def normalize(text: str) -> str:
    """`text` in Unicode NFC, case-folded, with punctuation and symbols removed and runs of spaces made one:
    the form in which a transcript and its intended text are compared."""
    folded = unicodedata.normalize("NFC", unicodedata.normalize("NFC", text).casefold())
    kept = []
    for ch in folded:
        category = unicodedata.category(ch)
        if ch in _APOSTROPHES or category == "Cf":  # Cf: zero-width joiners, soft hyphens, BOM
            continue
        kept.append(" " if category[0] in "PSZC" else ch)
    return " ".join("".join(kept).split())


def letters(text: str) -> int:
    """How many characters `text` has once normalised, spaces not counted: the length a speaking rate is
    measured in (characters per second)."""
    return len(normalize(text).replace(" ", ""))


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance between two strings: insertions, deletions and substitutions, each costing 1."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def cer(reference: str, hypothesis: str) -> float:
    """Character error rate of `hypothesis` (what was heard) against `reference` (what should have been said),
    both normalised. 1.0 when nothing was heard; capped at 1.0, so that one hallucinating clip cannot outweigh
    the others in an average. An empty reference scores 0.0 against an empty hypothesis, else 1.0."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return min(1.0, edit_distance(ref, hyp) / len(ref))
