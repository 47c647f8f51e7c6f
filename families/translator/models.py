"""The translator zoo (book ch. 16): RNN encoder-decoder, + attention (Luong, Bahdanau), Transformer.

Every model speaks one small interface, so decoding (decode.py) is written once:
- `forward(src, tgt_in) -> logits (B, T, V)`: teacher forcing (tgt_in = BOS + target);
- `encode(src) -> enc` (a dict of batch-first tensors), `init_state(enc) -> state`,
- `step(enc, state, prev) -> (log_probs (B, V), state, attention (B, S) or None)`: one decoder step.
States and encodings are dicts of batch-first tensors, so beam search reorders them with one
`index_select`. Token ids: PAD 0, BOS 1, EOS 2, UNK 3 on both sides.

New model: write the nn.Module with that interface, and declare it once at the bottom of this
file (its hparams class, its constructor from (hparams, info), its default search space).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from torch import nn

from components.config import ConfigError
from components.family import ModelSpec, zoo
from families.translator import chars
from families.translator.data import PAD


def lengths(ids: torch.Tensor) -> torch.Tensor:
    return (ids != PAD).sum(1)


# ----------------------------------------------------------------------------- RNN encoder-decoder
class RNNEncoder(nn.Module):
    """Embedding -> (bi)GRU/LSTM over packed sequences (pads never enter the recurrence)."""

    def __init__(self, vocab: int, emb_dim: int, hidden: int, layers: int, cell: str, bidirectional: bool, dropout: float):
        super().__init__()
        self.embed = nn.Embedding(vocab, emb_dim, padding_idx=PAD)
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn(emb_dim, hidden, layers, batch_first=True, bidirectional=bidirectional,
                       dropout=dropout if layers > 1 else 0.0)
        self.cell, self.layers, self.dirs = cell, layers, 2 if bidirectional else 1
        # Bidirectional: both directions' final states are concatenated and projected to the decoder size.
        self.bridge = nn.Linear(hidden * self.dirs, hidden) if bidirectional else None

    def _merge(self, h: torch.Tensor) -> torch.Tensor:
        """(layers*dirs, B, H) -> (B, layers, H)."""
        B = h.shape[1]
        h = h.view(self.layers, self.dirs, B, -1).permute(2, 0, 1, 3).reshape(B, self.layers, -1)
        return torch.tanh(self.bridge(h)) if self.bridge is not None else h

    def forward(self, src: torch.Tensor) -> dict[str, torch.Tensor]:
        mask = src != PAD
        packed = nn.utils.rnn.pack_padded_sequence(self.embed(src), lengths(src).clamp(min=1).cpu(), batch_first=True,
                                                   enforce_sorted=False)
        out, state = self.rnn(packed)
        memory, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
        enc = {"memory": memory, "mask": mask}
        if self.cell == "lstm":
            enc["h"], enc["c"] = self._merge(state[0]), self._merge(state[1])
        else:
            enc["h"] = self._merge(state)
        return enc


class LuongAttention(nn.Module):
    """Multiplicative ("general") attention over the encoder outputs; pads get zero weight."""

    def __init__(self, query_dim: int, memory_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(memory_dim, query_dim, bias=False)

    def forward(self, query: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """query (B, T, Hq), memory (B, S, Hm), mask (B, S) -> context (B, T, Hm), weights (B, T, S)."""
        scores = query @ self.proj(memory).transpose(1, 2)
        weights = scores.masked_fill(~mask[:, None, :], float("-inf")).softmax(-1)
        return weights @ memory, weights


class BahdanauAttention(nn.Module):
    """Additive attention: v^T tanh(W_m m_s + W_q q); pads get zero weight."""

    def __init__(self, query_dim: int, memory_dim: int, units: int) -> None:
        super().__init__()
        self.w_m = nn.Linear(memory_dim, units, bias=False)
        self.w_q = nn.Linear(query_dim, units)
        self.v = nn.Linear(units, 1, bias=False)

    def forward(self, query: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor, keys: torch.Tensor | None = None):
        keys = self.w_m(memory) if keys is None else keys
        scores = self.v(torch.tanh(keys[:, None] + self.w_q(query)[:, :, None])).squeeze(-1)
        weights = scores.masked_fill(~mask[:, None, :], float("-inf")).softmax(-1)
        return weights @ memory, weights


class RNNSeq2Seq(nn.Module):
    """Encoder-decoder with teacher forcing; attention none | luong | bahdanau.

    - none: the decoder starts from the encoder's final state (book ml3 [92]-[108]).
    - luong: the decoder RNN runs over the whole target, then attends with its outputs (book [118]).
    - bahdanau: the attention context of the previous state is fed into each step (one loop).
    """

    def __init__(self, src_vocab: int, tgt_vocab: int, emb_dim: int, hidden: int, layers: int, cell: str,
                 bidirectional: bool, dropout: float, attention: str | None) -> None:
        super().__init__()
        self.encoder = RNNEncoder(src_vocab, emb_dim, hidden, layers, cell, bidirectional, dropout)
        self.cell, self.attention_kind = cell, attention
        mem_dim = hidden * (2 if bidirectional else 1)
        self.embed = nn.Embedding(tgt_vocab, emb_dim, padding_idx=PAD)
        rnn_in = emb_dim + (mem_dim if attention == "bahdanau" else 0)
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn(rnn_in, hidden, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        if attention == "luong":
            self.attn = LuongAttention(hidden, mem_dim)
        elif attention == "bahdanau":
            self.attn = BahdanauAttention(hidden, mem_dim, hidden)
        else:
            self.attn = None
        self.combine = nn.Linear(hidden + mem_dim, hidden) if attention else None
        self.out = nn.Linear(hidden, tgt_vocab)

    def encode(self, src: torch.Tensor) -> dict[str, torch.Tensor]:
        enc = self.encoder(src)
        if self.attention_kind == "bahdanau":
            enc["keys"] = self.attn.w_m(enc["memory"])
        return enc

    def init_state(self, enc: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: enc[k] for k in ("h", "c") if k in enc}

    def _rnn(self, x: torch.Tensor, state: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        h0 = state["h"].transpose(0, 1).contiguous()
        if self.cell == "lstm":
            out, (h, c) = self.rnn(x, (h0, state["c"].transpose(0, 1).contiguous()))
            return out, {"h": h.transpose(0, 1), "c": c.transpose(0, 1)}
        out, h = self.rnn(x, h0)
        return out, {"h": h.transpose(0, 1)}

    def _head(self, out: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        if context is not None:
            out = torch.tanh(self.combine(torch.cat([out, context], -1)))
        return self.out(self.dropout(out))

    def _decode(self, enc: dict, state: dict, tgt_in: torch.Tensor):
        """Run the decoder over tgt_in (B, T) -> logits (B, T, V), state, attention (B, T, S) or None."""
        emb = self.dropout(self.embed(tgt_in))
        if self.attention_kind == "bahdanau":
            logits, weights = [], []
            for t in range(tgt_in.shape[1]):
                query = state["h"][:, -1:]  # the top layer's previous state
                context, w = self.attn(query, enc["memory"], enc["mask"], enc["keys"])
                out, state = self._rnn(torch.cat([emb[:, t:t + 1], context], -1), state)
                logits.append(self._head(out, context))
                weights.append(w)
            return torch.cat(logits, 1), state, torch.cat(weights, 1)
        out, state = self._rnn(emb, state)
        if self.attention_kind == "luong":
            context, weights = self.attn(out, enc["memory"], enc["mask"])
            return self._head(out, context), state, weights
        return self._head(out, None), state, None

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        enc = self.encode(src)
        return self._decode(enc, self.init_state(enc), tgt_in)[0]

    def step(self, enc: dict, state: dict, prev: torch.Tensor):
        logits, state, weights = self._decode(enc, state, prev[:, None])
        return logits[:, 0].log_softmax(-1), state, None if weights is None else weights[:, 0]


# ----------------------------------------------------------------------------- Transformer
def sinusoidal_encoding(max_len: int, dim: int) -> torch.Tensor:
    """The fixed sin/cos positional encodings of "Attention is all you need" (max_len, dim)."""
    pos = torch.arange(max_len, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10_000.0) / dim))
    pe = torch.zeros(max_len, dim)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div[: dim // 2])
    return pe


class DecoderLayer(nn.Module):
    """Pre-norm decoder block from nn.MultiheadAttention modules, so cross-attention weights come out."""

    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(dim, ff_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff_dim, dim))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(3))
        self.drop = nn.Dropout(dropout)

    def _cross_ff(self, x: torch.Tensor, memory: torch.Tensor, mem_pad: torch.Tensor):
        h = self.norms[1](x)
        a, weights = self.cross_attn(h, memory, memory, key_padding_mask=mem_pad, need_weights=True,
                                     average_attn_weights=True)
        x = x + self.drop(a)
        return x + self.drop(self.ff(self.norms[2](x))), weights

    def forward(self, x, memory, causal, tgt_pad, mem_pad):
        """Teacher forcing over the whole target: x (B, T, D) -> (B, T, D), cross-attention (B, T, S)."""
        h = self.norms[0](x)
        x = x + self.drop(self.self_attn(h, h, h, attn_mask=causal, key_padding_mask=tgt_pad, need_weights=False)[0])
        return self._cross_ff(x, memory, mem_pad)

    def step(self, x: torch.Tensor, cache: dict[str, torch.Tensor], mem: dict[str, torch.Tensor], mem_pad: torch.Tensor):
        """One new position x (B, 1, D) -> (out, cross-attention (B, 1, S), new cache).

        Same numbers as `forward` at that position, at O(t) per step: `cache` holds this layer's
        projected self-attention keys/values of the earlier positions ("k", "v"), `mem` the projected
        memory ("mk", "mv", made once per source), so nothing is re-projected (re-projecting was
        70 % of beam search's time)."""
        h = self.norms[0](x)
        k = _project(self.self_attn, h, 1)
        v = _project(self.self_attn, h, 2)
        if cache:
            k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
        x = x + self.drop(_attend(self.self_attn, _project(self.self_attn, h, 0), k, v, None)[0])
        a, weights = _attend(self.cross_attn, _project(self.cross_attn, self.norms[1](x), 0), mem["mk"], mem["mv"], mem_pad)
        x = x + self.drop(a)
        return x + self.drop(self.ff(self.norms[2](x))), weights, {"k": k, "v": v}

    def memory_cache(self, memory: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"mk": _project(self.cross_attn, memory, 1), "mv": _project(self.cross_attn, memory, 2)}


def _project(mha: nn.MultiheadAttention, x: torch.Tensor, which: int) -> torch.Tensor:
    """x (B, L, D) -> the query (0), key (1) or value (2) projection of `mha`, as (B, heads, L, D/heads)."""
    D, H = mha.embed_dim, mha.num_heads
    w = mha.in_proj_weight[which * D : (which + 1) * D]
    b = mha.in_proj_bias[which * D : (which + 1) * D]
    B, L, _ = x.shape
    return nn.functional.linear(x, w, b).view(B, L, H, D // H).transpose(1, 2)


def _attend(mha: nn.MultiheadAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pad: torch.Tensor | None):
    """Scaled dot-product attention with `mha`'s output projection; weights averaged over heads (B, Lq, S)."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if pad is not None:
        scores = scores.masked_fill(pad[:, None, None, :], float("-inf"))
    w = scores.softmax(-1)
    B, H, L, hd = q.shape
    out = (w @ v).transpose(1, 2).reshape(B, L, H * hd)
    return mha.out_proj(out), w.mean(1)


class TransformerSeq2Seq(nn.Module):
    """Encoder (nn.TransformerEncoderLayer x N) + decoder (DecoderLayer x N), sinusoidal positions,
    padding masks on every attention, a causal mask on decoder self-attention.

    Weight tying (Press & Wolf 2017; "Attention is all you need" §3.4): `tie_output` makes the
    output projection's weight the decoder's input embedding; `share_embeddings` (a shared
    source/target vocabulary) makes the encoder's embedding that same matrix too. A tied
    embedding starts at N(0, 1/hidden), as in fairseq, so that the logits start near zero; the
    untied default keeps nn.Embedding's N(0, 1)."""

    def __init__(self, src_vocab: int, tgt_vocab: int, hidden: int, heads: int, ff_dim: int, layers: int,
                 dropout: float, max_len: int = 512, tie_output: bool = False, share_embeddings: bool = False) -> None:
        super().__init__()
        if share_embeddings and src_vocab != tgt_vocab:
            raise ValueError(f"share_embeddings needs one vocabulary (src {src_vocab}, tgt {tgt_vocab} tokens)")
        self.dim = hidden
        self.src_embed = nn.Embedding(src_vocab, hidden, padding_idx=PAD)
        self.tgt_embed = self.src_embed if share_embeddings else nn.Embedding(tgt_vocab, hidden, padding_idx=PAD)
        self.register_buffer("pe", sinusoidal_encoding(max_len, hidden), persistent=False)
        layer = nn.TransformerEncoderLayer(hidden, heads, ff_dim, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(hidden), enable_nested_tensor=False)
        self.decoder = nn.ModuleList(DecoderLayer(hidden, heads, ff_dim, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(hidden)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, tgt_vocab)
        if tie_output or share_embeddings:
            nn.init.normal_(self.tgt_embed.weight, std=hidden ** -0.5)
            with torch.no_grad():
                self.tgt_embed.weight[PAD].zero_()
        if tie_output:
            self.out.weight = self.tgt_embed.weight

    def _embed(self, emb: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
        return self.drop(emb(ids) * math.sqrt(self.dim) + self.pe[: ids.shape[1]])

    def encode(self, src: torch.Tensor) -> dict[str, torch.Tensor]:
        mask = src != PAD
        memory = self.encoder(self._embed(self.src_embed, src), src_key_padding_mask=~mask)
        return {"memory": memory, "mask": mask}

    def init_state(self, enc: dict[str, torch.Tensor]) -> dict[str, Any]:
        return {"t": 0}  # plus "l<layer>": per-layer caches of projected keys/values (see DecoderLayer.step)

    def _decode(self, enc: dict, tgt_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        T = tgt_in.shape[1]
        causal = torch.ones(T, T, dtype=torch.bool, device=tgt_in.device).triu(1)
        x = self._embed(self.tgt_embed, tgt_in)
        weights = None
        for layer in self.decoder:
            x, weights = layer(x, enc["memory"], causal, tgt_in == PAD, ~enc["mask"])
        return self.out(self.norm(x)), weights

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        return self._decode(self.encode(src), tgt_in)[0]

    def step(self, enc: dict, state: dict, prev: torch.Tensor):
        """Incremental decoding with per-layer caches; the same numbers as `forward` at position t."""
        t = int(state["t"])
        x = self.drop(self.tgt_embed(prev[:, None]) * math.sqrt(self.dim) + self.pe[t : t + 1])
        new: dict[str, Any] = {"t": t + 1}
        weights = None
        for i, layer in enumerate(self.decoder):
            if f"m{i}" not in enc:  # projected memory, made at the first step; beams share their source's rows
                enc[f"m{i}"] = layer.memory_cache(enc["memory"])
            x, weights, new[f"l{i}"] = layer.step(x, state.get(f"l{i}", {}), enc[f"m{i}"], ~enc["mask"])
        return self.out(self.norm(x))[:, 0].log_softmax(-1), new, weights[:, 0]


# ----------------------------------------------------------------------------- the zoo
class TrainHParams(BaseModel):
    """What every translator takes: the model's size knobs shared by all, and the training knobs
    (read by the shared supervised loop). A typo or a bad value names its key."""

    model_config = ConfigDict(extra="forbid")

    layers: int = Field(1, gt=0, le=6)
    hidden: int = Field(128, gt=0, le=2048)
    dropout: float = Field(0.0, ge=0, lt=1)
    lr: float = Field(1e-3, gt=0, lt=1)
    batch_size: int = Field(32, gt=0, le=4096)
    clip_norm: float | None = Field(1.0, gt=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    val_batch_size: int = Field(500, gt=0, le=8192)


class Seq2SeqHParams(TrainHParams):
    """RNN encoder-decoder: the decoder starts from the encoder's final state."""

    cell: Literal["gru", "lstm"] = "gru"
    bidirectional: bool = False
    emb_dim: int = Field(32, gt=0, le=1024)


class AttentionHParams(Seq2SeqHParams):
    """RNN encoder-decoder whose decoder attends over the encoder outputs."""

    attention: Literal["luong", "bahdanau"] = "luong"


class TransformerHParams(TrainHParams):
    """Transformer encoder-decoder; `hidden` is the model width (embeddings included).

    The usual recipe ("Attention is all you need" §5.3-5.4, Press & Wolf 2017) is knobs here, off
    by default so that model dirs written before them build the same module: `lr_schedule`
    inverse_sqrt with `warmup_steps` (per optimizer step, train.step_lr; `lr` is the peak rate),
    `tie_output` and `share_embeddings` (weight tying; the latter needs the en-es prepare option
    `shared_vocab`), and the shared `label_smoothing` and `clip_norm`."""

    heads: int = Field(4, gt=0, le=16)
    ff_dim: int = Field(256, gt=0, le=8192)
    lr_schedule: Literal["constant", "inverse_sqrt"] = "constant"
    warmup_steps: int = Field(0, ge=0, le=1_000_000, description="linear warm-up of the rate over this many steps")
    tie_output: bool = Field(False, description="output projection weight = decoder input embedding")
    share_embeddings: bool = Field(False, description="encoder embedding = decoder embedding (shared vocabulary)")

    @field_validator("heads")
    @classmethod
    def _heads_divide_hidden(cls, heads: int, info: ValidationInfo) -> int:
        hidden = info.data.get("hidden")
        if hidden is not None and hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
        return heads

    @model_validator(mode="after")
    def _inverse_sqrt_needs_warmup(self) -> TransformerHParams:
        if self.lr_schedule == "inverse_sqrt" and self.warmup_steps == 0:
            raise ValueError("lr_schedule inverse_sqrt needs warmup_steps > 0 (the step its decay starts from)")
        return self


def _rnn(hp: dict[str, Any], info: dict[str, Any], attention: str | None) -> RNNSeq2Seq:
    return RNNSeq2Seq(int(info["src_vocab"]), int(info["tgt_vocab"]), emb_dim=hp["emb_dim"], hidden=hp["hidden"],
                      layers=hp["layers"], cell=hp["cell"], bidirectional=hp["bidirectional"], dropout=hp["dropout"],
                      attention=attention)


def build_seq2seq(hp: dict[str, Any], info: dict[str, Any]) -> RNNSeq2Seq:
    return _rnn(hp, info, None)


def build_attention(hp: dict[str, Any], info: dict[str, Any]) -> RNNSeq2Seq:
    return _rnn(hp, info, hp["attention"])


def build_transformer(hp: dict[str, Any], info: dict[str, Any]) -> TransformerSeq2Seq:
    # positions for the longest source/target seen in training, with room for longer requests
    max_len = max(int(info["max_src_len"]), int(info["max_tgt_len"])) * 2 + 16
    share = bool(hp.get("share_embeddings", False))
    if share and not info.get("shared_vocab"):
        raise ConfigError("translator hparams (transformer): share_embeddings needs one source/target vocabulary: set "
                          f"the {info.get('task', 'en-es')} prepare param shared_vocab: true")
    return TransformerSeq2Seq(int(info["src_vocab"]), int(info["tgt_vocab"]), hidden=hp["hidden"], heads=hp["heads"],
                              ff_dim=hp["ff_dim"], layers=hp["layers"], dropout=hp["dropout"], max_len=max_len,
                              tie_output=bool(hp.get("tie_output", False)), share_embeddings=share)


MODELS = zoo(
    ModelSpec("seq2seq", Seq2SeqHParams, build_seq2seq,
              space={"hidden": {"choice": [64, 128, 256]}, "lr": {"loguniform": [5e-4, 3e-3]}},
              doc="(bi)GRU/LSTM encoder-decoder without attention (book ml3 [92]-[108])"),
    ModelSpec("attention", AttentionHParams, build_attention,
              space={"hidden": {"choice": [64, 128, 256]}, "lr": {"loguniform": [5e-4, 3e-3]}},
              doc="RNN encoder-decoder with Luong or Bahdanau attention (book [118])"),
    ModelSpec("transformer", TransformerHParams, build_transformer,
              # lr is the peak rate when there is a warm-up (up to 2e-3 for the recipe's inverse_sqrt)
              space={"lr": {"loguniform": [3e-4, 2e-3]}, "dropout": {"uniform": [0.0, 0.2]},
                     "warmup_steps": {"choice": [200, 400, 800]}},
              doc="pre-norm Transformer encoder-decoder, sinusoidal positions; warm-up + inverse-sqrt "
                  "rate, label smoothing, tied/shared embeddings as hparams"),
)

# The translators do the translation tasks; the char-RNN (chars.py, on charrnn.CharRNN) is the
# language model of the character-level task, declared here so the family has one zoo.
TRANSLATION_TASKS = ("dates", "en-es")
MODELS = {
    **{name: dataclasses.replace(spec, tasks=spec.tasks or TRANSLATION_TASKS) for name, spec in MODELS.items()},
    **zoo(ModelSpec(chars.MODEL, chars.CharHParams, chars.build, space={"lr": {"loguniform": [1e-3, 1e-2]}},
                    tasks=(chars.TASK,), doc="char-level GRU language model, stateless or stateful (book ch. 16)")),
}


def build(hparams: dict[str, Any], info: dict[str, Any]) -> nn.Module:
    """hparams (validated, with "model") + data info (vocab sizes, lengths) -> an initialised module."""
    return MODELS[hparams["model"]].build(hparams, info)
