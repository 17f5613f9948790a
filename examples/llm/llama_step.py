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


class Projection(nn.Module):
    """A bias-free linear map ``x @ weight_t`` whose weight is held transposed, ``[in, out]``.

    Same numbers as ``nn.Linear`` (whose weight is ``[out, in]``); MKL's single-threaded
    sgemm runs the few-row products of a decode step 1.6-1.8x faster with the weight in
    this layout (16 rows of SmolLM2's MLP: 255 against 421 us). Loaded from a Linear's
    ``weight`` by :func:`transposed_state_dict`.
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight_t = nn.Parameter(torch.empty(in_features, out_features))

    def forward(self, x: Tensor) -> Tensor:
        return torch.matmul(x, self.weight_t)


def transposed_state_dict(weights: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """A ``transformers`` Llama state dict with every ``*_proj.weight`` as ``*_proj.weight_t``."""
    out: Dict[str, Tensor] = {}
    for key, value in weights.items():
        if key.endswith("_proj.weight"):
            out[key.removesuffix("weight") + "weight_t"] = value.t().contiguous()
        else:
            out[key] = value
    return out


def rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class StepRows:
    """Per-step indexing facts shared by every layer (built once per ``step``).

    The step is padding-free: the valid tokens of all rows are packed into one
    ``[N, hidden]`` matrix (``N = sum(lengths)``, row by row), so every projection
    computes them and no padding; attention then runs per row over its segment.
    """

    def __init__(
        self,
        valid: Tensor,
        write_slots: Tensor,
        write_positions: Tensor,
        slot_list: List[int],
        ends: List[int],
        offsets: List[int],
        lengths: List[int],
        masks: List[Tensor],
    ):
        self.valid = valid
        self.write_slots = write_slots
        self.write_positions = write_positions
        # Host copies, read once per step: row ``b``'s tokens are ``offsets[b] ..
        # offsets[b] + lengths[b]`` of the packed matrix, and it attends over its own
        # slot's first ``ends[b]`` positions, in place.
        self.slot_list = slot_list
        self.ends = ends
        self.offsets = offsets
        self.lengths = lengths
        # The causal mask of each row of more than one token ``[1, 1, G*len, end]``
        # (an empty tensor for a one-token row, which sees every cached position).
        self.masks = masks


def _step_rows(slots: Tensor, starts: Tensor, lengths: Tensor, t: int, groups: int, capacity: int) -> StepRows:
    """Packing, write indices and the attention masks of one step; ``capacity`` bounds the context."""
    steps = torch.arange(t, device=slots.device)
    positions = starts.unsqueeze(1) + steps.unsqueeze(0)  # [B, T]
    valid = steps.unsqueeze(0) < lengths.unsqueeze(1)  # [B, T]
    if int((starts + lengths).max()) > capacity:
        raise ValueError("step: a row extends past the cache's (or the model's) max_context")
    write_slots = slots.unsqueeze(1).expand(slots.shape[0], t)[valid]
    slot_list: List[int] = slots.tolist()
    start_list: List[int] = starts.tolist()
    length_list: List[int] = lengths.tolist()
    ends: List[int] = []
    offsets: List[int] = []
    masks: List[Tensor] = []
    offset = 0
    for i in range(len(slot_list)):
        start, length = start_list[i], length_list[i]
        end = start + length
        ends.append(end)
        offsets.append(offset)
        offset += length
        if length == 1:
            masks.append(torch.empty(0, device=slots.device))
        else:
            # Query at position p sees keys 0..=p of its own slot.
            keys = torch.arange(end, device=slots.device)
            query_positions = torch.arange(start, end, device=slots.device)
            mask = keys.view(1, end) <= query_positions.view(length, 1)  # [len, end]
            # The query heads of a group are folded into the time axis (g, t order).
            masks.append(mask.repeat(groups, 1).view(1, 1, groups * length, end))
    return StepRows(valid, write_slots, positions[valid], slot_list, ends, offsets, length_list, masks)


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
        self.q_proj = Projection(h, shape.num_heads * d)
        self.k_proj = Projection(h, shape.num_kv_heads * d)
        self.v_proj = Projection(h, shape.num_kv_heads * d)
        self.o_proj = Projection(shape.num_heads * d, h)

    def forward(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        layer_cache: Tensor,
        rows: StepRows,
    ) -> Tensor:
        # x: [N, hidden], the packed valid tokens; cos/sin: [N, 1, head_dim].
        n = x.shape[0]
        q = self.q_proj(x).view(n, self.num_heads, self.head_dim)
        k = self.k_proj(x).view(n, self.num_kv_heads, self.head_dim)
        v = self.v_proj(x).view(n, self.num_kv_heads, self.head_dim)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin

        # Write the new keys and values into their slots...
        k_cache, v_cache = layer_cache[0], layer_cache[1]
        index: List[Optional[Tensor]] = [rows.write_slots, None, rows.write_positions]
        k_cache.index_put_(index, k)
        v_cache.index_put_(index, v)
        # ...then attend over each row's own context where it lies in the cache: a view of
        # its slot's first ``end`` positions, never a copy, so a step reads the tokens its
        # rows attend to and no more (no gather, no padding to the longest row).
        # GQA without copying K/V: fold the query heads of a group into the time axis.
        # [N, heads, d] -> [N, kv_heads, groups, d]: a one-token row is already the
        # [1, kv_heads, groups * 1, d] query it needs.
        q = q.view(n, self.num_kv_heads, self.groups, self.head_dim)
        outs: List[Tensor] = []
        for i in range(len(rows.slot_list)):
            slot, end, length = rows.slot_list[i], rows.ends[i], rows.lengths[i]
            keys = k_cache.narrow(0, slot, 1).narrow(2, 0, end)
            values = v_cache.narrow(0, slot, 1).narrow(2, 0, end)
            query = q.narrow(0, rows.offsets[i], length)
            if length == 1:
                # One new token sees every cached position: no mask.
                outs.append(F.scaled_dot_product_attention(query, keys, values, scale=self.scale))
            else:
                # [len, kv_heads, groups, d] -> [1, kv_heads, groups * len, d] and back.
                query = query.permute(1, 2, 0, 3).reshape(1, self.num_kv_heads, self.groups * length, self.head_dim)
                out = F.scaled_dot_product_attention(query, keys, values, attn_mask=rows.masks[i], scale=self.scale)
                outs.append(out.view(self.num_kv_heads, self.groups, length, self.head_dim).permute(2, 0, 1, 3))
        # [N, kv_heads, groups, d] -> [N, heads * d]
        return self.o_proj(torch.cat(outs, 0).reshape(n, self.num_heads * self.head_dim))


class Mlp(nn.Module):
    """SiLU-gated feed-forward block (SwiGLU)."""

    def __init__(self, shape: LlamaShape):
        super().__init__()
        h, i = shape.hidden_size, shape.intermediate_size
        self.gate_proj = Projection(h, i)
        self.up_proj = Projection(h, i)
        self.down_proj = Projection(i, h)

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
        # Only the valid tokens go through the layers, packed row by row: a call's cost
        # follows sum(lengths), not B * T, so decode rows may share a call with a long
        # prefill chunk at no padding cost.
        positions = rows.write_positions
        cos = self.rope_cos[positions].unsqueeze(1)  # [N, 1, head_dim]
        sin = self.rope_sin[positions].unsqueeze(1)
        x = self.embed_tokens(input_ids[rows.valid])  # [N, hidden]
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, kv_cache[i], rows)
        last = torch.tensor(rows.offsets, device=x.device) + lengths - 1
        return self.lm_head(self.norm(x[last])).float()

    def forward(self, input_ids: Tensor, slots: Tensor, starts: Tensor, lengths: Tensor, kv_cache: Tensor) -> Tensor:
        """Same as ``step`` (so that ``forward``-only loaders can drive the model too)."""
        return self.step(input_ids, slots, starts, lengths, kv_cache)
