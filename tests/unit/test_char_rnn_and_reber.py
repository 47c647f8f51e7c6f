"""Chapter 16's sequence exercises: the char-RNN (stateless and stateful batches, state carried
across windows, bits per character, seeded sampling) and the Reber grammars (generator,
recogniser, corruptions, a classifier that learns them)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from families.translator import charrnn, reber


# ----------------------------------------------------------------------------- char-RNN
def test_vocab_round_trips_and_maps_unseen_characters_to_unknown() -> None:
    vocab = charrnn.CharVocab.of("hello world")
    assert vocab.decode(vocab.encode("hello")) == "hello"
    assert vocab.encode("hé")[1] == 0 and vocab.chars[0] == charrnn.UNKNOWN


def test_split_text_is_contiguous_with_the_test_text_last() -> None:
    text = "".join(chr(65 + i % 26) for i in range(1000))
    train, val, test = charrnn.split_text(text, 0.1, 0.1)
    assert train + val + test == text and len(test) == 100 and len(val) == 100


def test_stateful_batches_continue_each_stream_from_batch_to_batch() -> None:
    ids = np.arange(1001)
    batches = list(charrnn.stateful_batches(ids, seq_len=10, batch_size=4))
    for (x0, y0), (x1, _) in zip(batches, batches[1:]):
        assert (x1[:, 0] == x0[:, -1] + 1).all()  # row j of batch k+1 starts where row j of batch k ended
        assert (y0 == x0 + 1).all()  # targets are the next characters
    assert len(batches) == 25  # 4 streams of 250 characters, 10 at a time


def test_stateless_batches_are_shuffled_windows_with_shifted_targets() -> None:
    ids = np.arange(500)
    batches = list(charrnn.stateless_batches(ids, seq_len=20, batch_size=5, stride=20, rng=np.random.RandomState(0)))
    starts = sorted(int(x[i, 0]) for x, _ in batches for i in range(len(x)))
    assert len(set(starts)) == len(starts) == 20 and all(s % 20 == 0 for s in starts)  # 23 windows, 4 full batches
    for x, y in batches:
        assert x.shape == (5, 20) and (y == x + 1).all()
    first = [int(x[0, 0]) for x, _ in batches]
    assert first != sorted(first)  # shuffled


def test_carrying_the_state_across_windows_equals_one_pass_over_the_stream() -> None:
    torch.manual_seed(0)
    model = charrnn.CharRNN(12, emb_dim=4, hidden=8, layers=2).eval()
    ids = np.random.RandomState(0).randint(0, 12, size=301)
    with torch.no_grad():
        logits, _ = model(torch.from_numpy(ids[:-1])[None])
        nll = torch.nn.functional.cross_entropy(logits[0], torch.from_numpy(ids[1:]), reduction="mean")
    one_pass = float(nll) / math.log(2)
    assert math.isclose(charrnn.bits_per_char(model, ids, seq_len=50, stateful=True), one_pass, rel_tol=1e-5)
    # a zero state per window loses the context, so the score differs
    assert not math.isclose(charrnn.bits_per_char(model, ids, seq_len=50, stateful=False), one_pass, rel_tol=1e-5)


def test_a_uniform_model_scores_log2_of_the_vocabulary() -> None:
    model = charrnn.CharRNN(16, emb_dim=4, hidden=8, layers=1)
    torch.nn.init.zeros_(model.out.weight)
    torch.nn.init.zeros_(model.out.bias)
    assert math.isclose(charrnn.bits_per_char(model, np.arange(100) % 16, 10, stateful=True), 4.0, rel_tol=1e-6)


def test_both_ways_learn_a_repeating_text_and_sampling_is_seeded() -> None:
    vocab = charrnn.CharVocab.of("abcd")
    ids = vocab.encode("abcd" * 300)
    for stateful in (False, True):
        torch.manual_seed(0)
        model = charrnn.CharRNN(len(vocab), emb_dim=4, hidden=16, layers=1)
        run = charrnn.fit(model, ids, ids[:200], stateful=stateful, epochs=12, seq_len=20, batch_size=8, lr=0.01,
                          stride=11, seed=0)
        assert run.val_bpc_stateful < 0.2, run  # from log2(5) = 2.3 bits
        assert charrnn.generate(model, vocab, "ab", 8, temperature=0, seed=0) == "cdabcdab"
    # a temperature the fuzzer found (logits / 4e-92 overflow float32): greedy, not an error
    assert charrnn.generate(model, vocab, "ab", 8, temperature=3.97e-92, seed=0) == "cdabcdab"
    assert charrnn.generate(model, vocab, "\U00108270x", 5, temperature=1e-300, seed=0) == \
        charrnn.generate(model, vocab, "\U00108270x", 5, temperature=0, seed=0)
    a = charrnn.generate(model, vocab, "a", 30, temperature=5.0, seed=1)
    assert a == charrnn.generate(model, vocab, "a", 30, temperature=5.0, seed=1) and len(a) == 30
    assert a != charrnn.generate(model, vocab, "a", 30, temperature=5.0, seed=2)


# ----------------------------------------------------------------------------- Reber grammars
@pytest.mark.parametrize("name", ["reber", "embedded"])
def test_generated_strings_are_grammatical_and_corruptions_are_not(name: str) -> None:
    rng = np.random.RandomState(0)
    recognise = reber.RECOGNISERS[name]
    good = [reber.generate(reber.GRAMMARS[name], rng) for _ in range(500)]
    assert all(recognise(s) for s in good) and len(set(good)) > 50
    bad = [reber.corrupt(name, rng) for _ in range(500)]
    assert not any(recognise(s) for s in bad)


def test_embedded_reber_needs_the_second_and_second_to_last_symbols_to_match() -> None:
    assert reber.is_reber("BTXSE") and reber.is_embedded_reber("BTBTXSETE")
    assert not reber.is_embedded_reber("BTBTXSEPE")  # T ... P: the long-range dependency
    assert not reber.is_reber("BTXSEE") and not reber.is_reber("BTX")


def test_dataset_labels_agree_with_the_recogniser_and_are_balanced() -> None:
    strings, labels = reber.dataset("embedded", 400, seed=3)
    assert labels.sum() == 200
    assert all(bool(y) == reber.is_embedded_reber(s) for s, y in zip(strings, labels))


def test_the_classifier_learns_the_reber_grammar() -> None:
    _, run = reber.fit("reber", 2000, 400, 400, epochs=6, seed=0)
    assert run.test_accuracy > 0.95, run
