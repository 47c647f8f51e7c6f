"""Decoding, written once for every translator model (the interface in models.py): greedy and
beam search, batched, and `translate_ids`, the one batching of id sequences that the per-epoch
validation, the evaluate stage and serving all decode through. PAD and BOS are never emitted;
hypotheses carry the model's own log-probabilities (so a caller can re-score or compare them)
and, when asked, the attention.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from families.translator.data import BOS, EOS, PAD


def select(obj: Any, idx: torch.Tensor) -> Any:
    """Reorder/duplicate the batch dimension of every tensor in a (nested) dict."""
    if isinstance(obj, torch.Tensor):
        return obj.index_select(0, idx)
    if isinstance(obj, dict):
        return {k: select(v, idx) for k, v in obj.items()}
    return obj


@dataclass
class Hypothesis:
    """One decoded output: token ids (without BOS/EOS), summed log-prob, length-normalised score
    (log-prob per emitted token incl. EOS; what beams are ranked by), attention (steps x source)."""

    tokens: list[int]
    logprob: float
    score: float
    attention: list[list[float]] | None = None


def _hyp(tokens: list[int], logprob: float, ended: bool, attention: torch.Tensor | None) -> Hypothesis:
    n = len(tokens) + (1 if ended else 0)
    att = None if attention is None else attention[:n].tolist()
    return Hypothesis(tokens, float(logprob), float(logprob) / max(n, 1), att)


def _step(model: nn.Module, enc: dict, state: Any, prev: torch.Tensor):
    """One decoder step with PAD and BOS ruled out as outputs (log-probs stay the model's own)."""
    lp, state, w = model.step(enc, state, prev)
    lp = lp.clone()
    lp[:, PAD] = float("-inf")
    lp[:, BOS] = float("-inf")
    return lp, state, w


@torch.no_grad()
def greedy_decode(model: nn.Module, src: torch.Tensor, max_len: int, attention: bool = False) -> list[Hypothesis]:
    """Batched argmax decoding until EOS or max_len."""
    enc = model.encode(src)
    state = model.init_state(enc)
    B = src.shape[0]
    prev = torch.full((B,), BOS, dtype=torch.long, device=src.device)
    out = torch.zeros(B, 0, dtype=torch.long, device=src.device)
    logp = torch.zeros(B, device=src.device)
    done = torch.zeros(B, dtype=torch.bool, device=src.device)
    att: list[torch.Tensor] = []
    for _ in range(max_len):
        lp, state, w = _step(model, enc, state, prev)
        best, tok = lp.max(-1)
        logp += torch.where(done, torch.zeros_like(best), best)
        tok = torch.where(done, torch.full_like(tok, PAD), tok)
        out = torch.cat([out, tok[:, None]], 1)
        if attention and w is not None:
            att.append(w)
        done |= tok == EOS
        prev = tok
        if bool(done.all()):
            break
    att_t = torch.stack(att, 1) if att else None
    hyps = []
    for b in range(B):
        row = out[b].tolist()
        ended = EOS in row
        tokens = row[: row.index(EOS)] if ended else [t for t in row if t != PAD]
        hyps.append(_hyp(tokens, float(logp[b]), ended, None if att_t is None else att_t[b]))
    return hyps


@torch.no_grad()
def beam_search(model: nn.Module, src: torch.Tensor, beam_width: int, max_len: int, attention: bool = False
                ) -> list[list[Hypothesis]]:
    """Batched beam search; per input, up to `beam_width` hypotheses sorted by length-normalised score.

    Each step every live beam is extended by every token; of the best 2k candidates, those that end
    (EOS) within the top k are finished, the best k that do not end live on (so k=1 is greedy). An
    input stops when it holds k finished hypotheses; at max_len the live beams count as unfinished.
    """
    k = beam_width
    B = src.shape[0]
    dev = src.device
    enc = model.encode(src)
    enc = select(enc, torch.arange(B, device=dev).repeat_interleave(k))
    state = model.init_state(enc)
    scores = torch.full((B, k), float("-inf"), device=dev)
    scores[:, 0] = 0.0
    seqs = torch.zeros(B * k, 0, dtype=torch.long, device=dev)
    att = None  # (B*k, t, S)
    prev = torch.full((B * k,), BOS, dtype=torch.long, device=dev)
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    active = [True] * B
    for t in range(max_len):
        lp, state, w = _step(model, enc, state, prev)
        V = lp.shape[-1]
        cand = (scores.view(-1, 1) + lp).view(B, k * V)
        top_scores, top_idx = cand.topk(min(2 * k, k * V), dim=1)
        next_rows, next_tok, next_scores = [], [], []
        for b in range(B):
            rows, toks, scs = [], [], []
            for rank, (s, i) in enumerate(zip(top_scores[b].tolist(), top_idx[b].tolist())):
                if len(rows) == k:
                    break
                beam, tok = divmod(i, V)
                row = b * k + beam
                if s == float("-inf"):
                    continue
                if tok == EOS:
                    if active[b] and rank < k:
                        a = None
                        if attention and w is not None:
                            before = att[row] if att is not None else w.new_zeros(0, w.shape[1])
                            a = torch.cat([before, w[row][None]], 0)
                        finished[b].append(_hyp(seqs[row].tolist(), s, True, a))
                    continue
                rows.append(row)
                toks.append(tok)
                scs.append(s)
            while len(rows) < k:  # pad with dead beams
                rows.append(b * k)
                toks.append(PAD)
                scs.append(float("-inf"))
            if active[b] and len(finished[b]) >= k:
                active[b] = False
            if not active[b]:
                scs = [float("-inf")] * k
            next_rows += rows
            next_tok += toks
            next_scores += scs
        idx = torch.tensor(next_rows, device=dev)
        tok_t = torch.tensor(next_tok, device=dev)
        seqs = torch.cat([seqs.index_select(0, idx), tok_t[:, None]], 1)
        if attention and w is not None:
            step_w = w.index_select(0, idx)[:, None]
            att = step_w if att is None else torch.cat([att.index_select(0, idx), step_w], 1)
        state = select(state, idx)
        scores = torch.tensor(next_scores, device=dev).view(B, k)
        prev = tok_t
        if not any(active):
            break
    for b in range(B):
        if len(finished[b]) < k:
            order = scores[b].argsort(descending=True).tolist()
            for j in order:
                s = float(scores[b, j])
                if s == float("-inf") or len(finished[b]) >= k:
                    continue
                row = b * k + j
                finished[b].append(_hyp(seqs[row].tolist(), s, False, att[row] if att is not None else None))
        finished[b].sort(key=lambda h: h.score, reverse=True)
        finished[b] = finished[b][:k]
    return finished


def pad(seqs: list[list[int]]) -> torch.Tensor:
    width = max(len(s) for s in seqs)
    return torch.tensor([s + [PAD] * (width - len(s)) for s in seqs], dtype=torch.long)


@torch.no_grad()
def translate_ids(model: nn.Module, src: list[list[int]], beam_width: int, max_len: int, attention: bool = False,
                  batch_size: int = 256, progress: Any = None) -> list[list[Hypothesis]]:
    """n-best lists (greedy: one hypothesis) for id sequences, batched by similar length, on the
    model's device. Every score of a translator goes through here, so validation and evaluation
    decode the same batches and get the same outputs. `progress` (components.progress.Progress)
    counts the sentences decoded."""
    device = next(model.parameters()).device
    order = sorted(range(len(src)), key=lambda i: len(src[i]))
    out: list[list[Hypothesis]] = [[] for _ in src]
    for c in range(0, len(order), batch_size):
        idx = order[c:c + batch_size]
        x = pad([src[i] for i in idx]).to(device)
        limit = min(max_len, 2 * x.shape[1] + 4)
        if beam_width == 1:
            res = [[h] for h in greedy_decode(model, x, limit, attention)]
        else:
            res = beam_search(model, x, beam_width, limit, attention)
        for i, r in zip(idx, res):
            for h in r:  # the batch pads sources to one width: keep this source's own columns
                if h.attention is not None:
                    h.attention = [row[: len(src[i])] for row in h.attention]
            out[i] = r
        if progress is not None:
            progress.update(len(idx))
    return out
