"""How the translator is judged, shared by the per-epoch validation (train.py) and the evaluate
stage (evaluate.py): both decode with `translations` and score the split's own target strings
with `score_texts`, so the epoch chosen as best is chosen on the number evaluate reports.

- dates: tuned and promoted on whole-string exact match (greedy); also per-character accuracy.
- en-es: tuned and promoted on chrF (sacreBLEU's corpus chrF, greedy). chrF rather than BLEU
  because on ~11k training pairs BLEU sits in the low single digits early in training, where
  4-gram precision is mostly zero and one epoch's ranking is noise; chrF moves smoothly with
  partial (character n-gram) progress and suits Spanish morphology. BLEU is reported beside it.
"""

from __future__ import annotations

from typing import Any

from components.family import Metric
from families.translator.data import Codec
from families.translator.decode import translate_ids

METRICS = {"dates": Metric("exact_match", "max"), "en-es": Metric("chrf", "max")}


def max_decode_len(info: dict[str, Any], src_width: int | None = None) -> int:
    """Output length limit: 1.5x the longest training target, and at most 2x the (batch's) source
    length + 4, so a model that never says EOS does not decode 77 steps for a 5-token input."""
    limit = int(info["max_tgt_len"] * 1.5) + 2
    return limit if src_width is None else min(limit, 2 * src_width + 4)


def char_accuracy(preds: list[str], refs: list[str]) -> float:
    """Reference characters matched at the same position (micro-averaged over all characters)."""
    hits = sum(sum(a == b for a, b in zip(p, r)) for p, r in zip(preds, refs))
    return hits / max(sum(len(r) for r in refs), 1)


def score_texts(task: str, preds: list[str], refs: list[str], prefix: str) -> dict[str, float]:
    """dates: exact_match, char_accuracy; en-es: bleu, chrf (sacreBLEU, 0..100)."""
    if task == "dates":
        return {f"{prefix}_exact_match": sum(p == r for p, r in zip(preds, refs)) / max(len(refs), 1),
                f"{prefix}_char_accuracy": char_accuracy(preds, refs)}
    import sacrebleu

    return {f"{prefix}_bleu": float(sacrebleu.corpus_bleu(preds, [refs]).score),
            f"{prefix}_chrf": float(sacrebleu.corpus_chrf(preds, [refs]).score)}


def translations(model: Any, src: list[list[int]], info: dict[str, Any], beam_width: int = 1,
                 batch_size: int = 500, progress: Any = None) -> list[str]:
    """Detokenised best hypotheses (greedy for beam_width 1) for id sequences, under the decode
    length limit of the test metric; batch_size is the model's `val_batch_size`."""
    codec = Codec(info)
    hyps = translate_ids(model, src, beam_width, max_decode_len(info), batch_size=batch_size, progress=progress)
    return [codec.decode_target(h[0].tokens) for h in hyps]
