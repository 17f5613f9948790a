"""A Llama-architecture causal LM written for the modelplane generate contract.

The module is TorchScript-scriptable and exposes the methods that
docs/generate-contract.md specifies: ``step`` (one engine iteration over a batch
of rows that each extend one slot of an engine-owned KV cache), ``new_cache``
(allocates that cache) and ``config`` (the shape facts the engine checks).

Numerics follow ``transformers``' LlamaForCausalLM op for op (RMSNorm in float32,
rotate-half RoPE, SiLU-gated MLP), so greedy decoding matches its ``generate``.
"""

from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class LlamaShape:
    """The hyper-parameters of a Llama-architecture model."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    max_context: int
    rope_theta: float
    rms_norm_eps: float
    tie_word_embeddings: bool

    @classmethod
    def from_hf_config(cls, cfg) -> "LlamaShape":
        """Reads the shape from a ``transformers`` LlamaConfig."""
        rope = getattr(cfg, "rope_parameters", None) or {}
        theta = rope.get("rope_theta", getattr(cfg, "rope_theta", None))
        if rope.get("rope_type", "default") != "default" or theta is None:
            raise ValueError(f"unsupported RoPE parameters: {rope!r}")
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        return cls(
            vocab_size=cfg.vocab_size,
            hidden_size=cfg.hidden_size,
            intermediate_size=cfg.intermediate_size,
            num_layers=cfg.num_hidden_layers,
            num_heads=cfg.num_attention_heads,
            num_kv_heads=cfg.num_key_value_heads,
            head_dim=head_dim,
            max_context=cfg.max_position_embeddings,
            rope_theta=float(theta),
            rms_norm_eps=float(cfg.rms_norm_eps),
            tie_word_embeddings=bool(cfg.tie_word_embeddings),
        )


class RMSNorm(nn.Module):
    """Root-mean-square layer norm, computed in float32 like the reference."""

    def __init__(self, size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        dtype = x.dtype
        h = x.to(torch.float32)
        variance = h.pow(2).mean(-1, keepdim=True)
        h = h * torch.rsqrt(variance + self.eps)
        return self.weight * h.to(dtype)


def rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class StepRows:
    """Per-step indexing facts shared by every layer (built once per ``step``)."""

    def __init__(
        self,
        slots: Tensor,
        positions: Tensor,
        valid: Tensor,
        write_slots: Tensor,
        write_positions: Tensor,
        context: int,
        mask: Tensor,
        slot_list: List[int],
        ends: List[int],
    ):
        self.slots = slots
        self.positions = positions
        self.valid = valid
        self.write_slots = write_slots
        self.write_positions = write_positions
        self.context = context
        self.mask = mask
        # Host copies, read once per step: each row attends over its own slot's first
        # ``ends[b]`` positions, in place.
        self.slot_list = slot_list
        self.ends = ends


def _step_rows(slots: Tensor, starts: Tensor, lengths: Tensor, t: int, groups: int, capacity: int) -> StepRows:
    """Positions, write indices and the attention mask of one step; ``capacity`` bounds the context."""
    offsets = torch.arange(t, device=slots.device)
    positions = starts.unsqueeze(1) + offsets.unsqueeze(0)  # [B, T]
    valid = offsets.unsqueeze(0) < lengths.unsqueeze(1)  # [B, T]
    context = int((starts + lengths).max())
    if context > capacity:
        raise ValueError("step: a row extends past the cache's (or the model's) max_context")
    keys = torch.arange(context, device=slots.device)
    # Query at position p sees keys 0..=p of its own slot; padded queries are ignored.
    mask = keys.view(1, 1, 1, context) <= positions.view(positions.shape[0], 1, t, 1)
    mask = mask.repeat(1, 1, groups, 1)  # [B, 1, G*T, ctx], matching the folded heads
    write_slots = slots.unsqueeze(1).expand(slots.shape[0], t)[valid]
    slot_list: List[int] = slots.tolist()
    ends: List[int] = (starts + lengths).tolist()
    return StepRows(slots, positions, valid, write_slots, positions[valid], context, mask, slot_list, ends)


class Attention(nn.Module):
    """Grouped-query attention over one layer of the slotted KV cache."""

    def __init__(self, shape: LlamaShape):
        super().__init__()
        self.num_heads = shape.num_heads
        self.num_kv_heads = shape.num_kv_heads
        self.head_dim = shape.head_dim
        self.groups = shape.num_heads // shape.num_kv_heads
        self.scale = shape.head_dim**-0.5
        h, d = shape.hidden_size, shape.head_dim
        self.q_proj = nn.Linear(h, shape.num_heads * d, bias=False)
        self.k_proj = nn.Linear(h, shape.num_kv_heads * d, bias=False)
        self.v_proj = nn.Linear(h, shape.num_kv_heads * d, bias=False)
        self.o_proj = nn.Linear(shape.num_heads * d, h, bias=False)

    def forward(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        layer_cache: Tensor,
        rows: StepRows,
    ) -> Tensor:
        b, t = x.shape[0], x.shape[1]
        q = self.q_proj(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin

        # Write the new keys and values of the valid tokens into their slots...
        k_cache, v_cache = layer_cache[0], layer_cache[1]
        k_new = k.transpose(1, 2)[rows.valid]
        v_new = v.transpose(1, 2)[rows.valid]
        index: List[Optional[Tensor]] = [rows.write_slots, None, rows.write_positions]
        k_cache.index_put_(index, k_new)
        v_cache.index_put_(index, v_new)
        # ...then attend over each row's own context where it lies in the cache: a view of
        # its slot's first ``end`` positions, never a copy, so a step reads the tokens its
        # rows attend to and no more (no gather, no padding to the longest row).
        # GQA without copying K/V: fold the query heads of a group into the time axis.
        q = q.reshape(b, self.num_kv_heads, self.groups * t, self.head_dim)
        outs: List[Tensor] = []
        for i in range(b):
            slot, end = rows.slot_list[i], rows.ends[i]
            keys = k_cache[slot].narrow(1, 0, end).unsqueeze(0)
            values = v_cache[slot].narrow(1, 0, end).unsqueeze(0)
            query = q.narrow(0, i, 1)
            if t == 1:
                # One new token sees every cached position: no mask.
                outs.append(F.scaled_dot_product_attention(query, keys, values, scale=self.scale))
            else:
                mask = rows.mask.narrow(0, i, 1).narrow(3, 0, end)
                outs.append(F.scaled_dot_product_attention(query, keys, values, attn_mask=mask, scale=self.scale))
        out = torch.cat(outs, 0)
        out = out.reshape(b, self.num_heads, t, self.head_dim).transpose(1, 2)
        return self.o_proj(out.reshape(b, t, self.num_heads * self.head_dim))


class Mlp(nn.Module):
    """SiLU-gated feed-forward block (SwiGLU)."""

    def __init__(self, shape: LlamaShape):
        super().__init__()
        h, i = shape.hidden_size, shape.intermediate_size
        self.gate_proj = nn.Linear(h, i, bias=False)
        self.up_proj = nn.Linear(h, i, bias=False)
        self.down_proj = nn.Linear(i, h, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    """Pre-norm transformer block: attention then MLP, each with a residual."""

    def __init__(self, shape: LlamaShape):
        super().__init__()
        self.input_layernorm = RMSNorm(shape.hidden_size, shape.rms_norm_eps)
        self.self_attn = Attention(shape)
        self.post_attention_layernorm = RMSNorm(shape.hidden_size, shape.rms_norm_eps)
        self.mlp = Mlp(shape)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, layer_cache: Tensor, rows: StepRows) -> Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, layer_cache, rows)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaStep(nn.Module):
    """Llama causal LM whose ``step`` drives an engine-owned, slotted KV cache."""

    def __init__(self, shape: LlamaShape):
        super().__init__()
        self.vocab_size = shape.vocab_size
        self.num_layers = shape.num_layers
        self.num_heads = shape.num_heads
        self.num_kv_heads = shape.num_kv_heads
        self.head_dim = shape.head_dim
        self.hidden_size = shape.hidden_size
        self.max_context = shape.max_context
        self.groups = shape.num_heads // shape.num_kv_heads
        self.embed_tokens = nn.Embedding(shape.vocab_size, shape.hidden_size)
        self.layers = nn.ModuleList([DecoderLayer(shape) for _ in range(shape.num_layers)])
        self.norm = RMSNorm(shape.hidden_size, shape.rms_norm_eps)
        self.lm_head = nn.Linear(shape.hidden_size, shape.vocab_size, bias=False)
        if shape.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        inv_freq = 1.0 / (
            shape.rope_theta ** (torch.arange(0, shape.head_dim, 2, dtype=torch.int64).float() / shape.head_dim)
        )
        freqs = torch.arange(shape.max_context, dtype=torch.int64).float().unsqueeze(1) * inv_freq.unsqueeze(0)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("rope_cos", emb.cos())
        self.register_buffer("rope_sin", emb.sin())

    @torch.jit.export
    def config(self) -> Dict[str, int]:
        """Shape facts the engine checks against config.json and uses to size the cache."""
        return {
            "vocab_size": self.vocab_size,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "num_kv_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_size": self.hidden_size,
            "max_context": self.max_context,
        }

    @torch.jit.export
    def new_cache(self, slots: int, max_context: int) -> Tensor:
        """Allocates a zeroed KV cache ``[layers, 2, slots, kv_heads, max_context, head_dim]``."""
        if slots < 1 or max_context < 1 or max_context > self.max_context:
            raise ValueError("new_cache: need slots >= 1 and 1 <= max_context <= model max_context")
        weight = self.embed_tokens.weight
        return torch.zeros(
            [self.num_layers, 2, slots, self.num_kv_heads, max_context, self.head_dim],
            dtype=weight.dtype,
            device=weight.device,
        )

    @torch.jit.export
    def step(self, input_ids: Tensor, slots: Tensor, starts: Tensor, lengths: Tensor, kv_cache: Tensor) -> Tensor:
        """Runs ``lengths[b]`` new tokens of each row ``b`` at positions ``starts[b]..``.

        Writes their keys and values into ``kv_cache[:, :, slots[b]]`` in place and
        returns float32 logits ``[B, vocab]`` of each row's last new token.
        """
        b, t = input_ids.shape[0], input_ids.shape[1]
        if slots.shape[0] != b or starts.shape[0] != b or lengths.shape[0] != b:
            raise ValueError("step: slots, starts and lengths need one entry per row of input_ids")
        if bool((lengths < 1).any()) or bool((lengths > t).any()) or bool((starts < 0).any()):
            raise ValueError("step: need 1 <= lengths[b] <= T and starts[b] >= 0")
        c = kv_cache.shape
        if kv_cache.dim() != 6 or c[0] != self.num_layers or c[3] != self.num_kv_heads or c[5] != self.head_dim:
            raise ValueError("step: kv_cache is not [layers, 2, slots, kv_heads, max_context, head_dim]")
        if bool((slots < 0).any()) or bool((slots >= c[2]).any()) or torch.unique(slots).shape[0] != b:
            raise ValueError("step: slots must be distinct and within the cache")
        capacity = min(c[4], self.max_context)
        rows = _step_rows(slots, starts, lengths, t, self.groups, capacity)
        # Padded positions may lie past the table; their outputs are never used.
        positions = rows.positions.clamp(max=self.max_context - 1)
        cos = self.rope_cos[positions].unsqueeze(1)  # [B, 1, T, head_dim]
        sin = self.rope_sin[positions].unsqueeze(1)
        x = self.embed_tokens(input_ids)
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, kv_cache[i], rows)
        last = x[torch.arange(b, device=x.device), lengths - 1]  # [B, hidden]
        return self.lm_head(self.norm(last)).float()

    def forward(self, input_ids: Tensor, slots: Tensor, starts: Tensor, lengths: Tensor, kv_cache: Tensor) -> Tensor:
        """Same as ``step`` (so that ``forward``-only loaders can drive the model too)."""
        return self.step(input_ids, slots, starts, lengths, kv_cache)
