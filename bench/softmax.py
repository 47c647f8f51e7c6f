"""Does a vocabulary here need a sampled or adaptive softmax (the book's answer for large ones)?

Measures, on this CPU with torch threads 1, a training step (forward + backward) of an en-es
sized GRU encoder-decoder (bidirectional encoder 128, decoder 256, 64 pairs x 25 tokens) and,
separately, its output layer + softmax cross-entropy over the vocabulary, full and adaptive
(`torch.nn.AdaptiveLogSoftmaxWithLoss`, clusters [200, 800]), with Zipf-distributed targets
(BPE ids are roughly frequency-ordered), for the vocabularies the tasks use.

    python -m bench.softmax
"""

from __future__ import annotations

import time

import torch


def ms_per_call(fn, repeats: int = 20) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats * 1000


def measure(vocab: int, batch: int = 64, length: int = 25, hidden: int = 128, emb_dim: int = 64) -> dict[str, float]:
    torch.manual_seed(0)
    emb = torch.nn.Embedding(vocab, emb_dim)
    enc = torch.nn.GRU(emb_dim, hidden, batch_first=True, bidirectional=True)
    dec = torch.nn.GRU(emb_dim, 2 * hidden, batch_first=True)
    out = torch.nn.Linear(2 * hidden, vocab)
    zipf = torch.distributions.Categorical(probs=1.0 / torch.arange(1, vocab + 1).float())
    src, tgt = zipf.sample((batch, length)), zipf.sample((batch, length))
    cutoffs = [c for c in (200, 800) if c < vocab - 1]
    adaptive = torch.nn.AdaptiveLogSoftmaxWithLoss(2 * hidden, vocab, cutoffs=cutoffs, div_value=4.0) if cutoffs else None

    def step() -> None:
        _, h = enc(emb(src))
        d, _ = dec(emb(tgt), torch.cat([h[0], h[1]], -1)[None])
        torch.nn.functional.cross_entropy(out(d).reshape(-1, vocab), tgt.reshape(-1)).backward()

    def full_head() -> None:
        d = torch.randn(batch, length, 2 * hidden, requires_grad=True)
        torch.nn.functional.cross_entropy(out(d).reshape(-1, vocab), tgt.reshape(-1)).backward()

    def adaptive_head() -> None:
        d = torch.randn(batch, length, 2 * hidden, requires_grad=True)
        adaptive(d.reshape(-1, 2 * hidden), tgt.reshape(-1)).loss.backward()

    result = {"vocab": vocab, "step_ms": ms_per_call(step), "full_head_ms": ms_per_call(full_head)}
    result["adaptive_head_ms"] = ms_per_call(adaptive_head) if adaptive else float("nan")
    return result


def main() -> int:
    torch.set_num_threads(1)
    print("| vocabulary | training step ms | output layer + full softmax ms (share of the step) | adaptive softmax ms | step with adaptive (estimate) |")
    print("|---|---|---|---|---|")
    for vocab, what in ((68, "web-chars characters"), (2000, "en-es BPE (default)"), (8000, "a larger BPE")):
        r = measure(vocab)
        head = f"{r['full_head_ms']:.1f} ({r['full_head_ms'] / r['step_ms']:.0%})"
        if r["adaptive_head_ms"] != r["adaptive_head_ms"]:  # nan: too few symbols for clusters
            print(f"| {vocab:,} ({what}) | {r['step_ms']:.1f} | {head} | – (too few symbols) | – |")
            continue
        est = r["step_ms"] - r["full_head_ms"] + r["adaptive_head_ms"]
        print(f"| {vocab:,} ({what}) | {r['step_ms']:.1f} | {head} | {r['adaptive_head_ms']:.1f} | "
              f"{est:.1f} ({r['step_ms'] / est:.2f}x faster) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
