"""A tiny random-weight causal language model with a byte-level BPE tokenizer.

The network is the Llama architecture (RMSNorm, rotary embeddings, grouped-query attention,
SwiGLU, tied embeddings) that SmolLM2 uses, at toy size, with Hugging Face's parameter
names: `LlamaForCausalLM` loads its state_dict as it is. It is for smoke tests of the
generate task, not for sensible text.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import jinja2
import torch
import torch.nn.functional as F
from torch import nn

from .artifacts import Artifacts, Tensor, check_matches, save_sample, save_torchscript

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # ids 0, 1, 2 as in SmolLM2
BOS_ID, EOS_ID = 1, 2
VOCAB_TARGET = 1024
# ChatML, as SmolLM2-Instruct writes it, without its default system prompt.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SAMPLE_MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
SAMPLE_NEW_TOKENS = 16
PROJECTION_GAIN = 3.0

CORPUS = """\
The capital of France is Paris. The capital of Germany is Berlin. The capital of Italy is Rome.
What is the capital of France? Paris is the capital and largest city of France.
Hello! How can I help you today? I am a small language model running on modelplane.
A model server loads a model, warms it up, and then answers requests over HTTP and gRPC.
Kubernetes runs containers in pods; an operator watches resources and reconciles them.
The quick brown fox jumps over the lazy dog. A stitch in time saves nine.
Tokens are pieces of text: words, parts of words, spaces and punctuation marks.
Continuous batching lets new requests join a running batch at every decoding step.
Streaming sends each token to the client as soon as the model produces it.
Water boils at 100 degrees Celsius at sea level; ice melts at 0 degrees.
One, two, three, four, five, six, seven, eight, nine, ten. 1 2 3 4 5 6 7 8 9 10.
The user asked a question and the assistant gave a short, helpful answer.
def add(a, b):\n    return a + b\nprint(add(2, 3))
{"model": "tiny-lm", "messages": [{"role": "user", "content": "Hi"}], "stream": true}
Rust is a systems programming language; Python is popular for machine learning.
The weather today is sunny with a light breeze, and tomorrow it may rain.
Thank you! You are welcome. Good morning, good evening, good night.
"""


def train_tokenizer():
    """Trains a byte-level BPE tokenizer on CORPUS (deterministic: no randomness in BPE)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_TARGET,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS.splitlines(), trainer)
    for token_id, token in enumerate(SPECIAL_TOKENS):
        if tokenizer.token_to_id(token) != token_id:
            raise AssertionError(f"special token {token} is not id {token_id}")
    return tokenizer


def model_config(vocab_size: int) -> dict:
    """Hugging Face LlamaConfig fields, plus the chat template the runtime renders."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab_size,
        "hidden_size": 64,
        "intermediate_size": 160,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "max_position_embeddings": 256,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": True,
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "pad_token_id": EOS_ID,
        "torch_dtype": "float32",
        "chat_template": CHAT_TEMPLATE,
    }


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


class RotaryEmbedding(nn.Module):
    """cos/sin tables for positions 0..T-1, in the rotate-half layout of Hugging Face Llama."""

    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        exponents = torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim
        self.register_buffer("inv_freq", 1.0 / (theta**exponents), persistent=False)

    def forward(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        positions = torch.arange(length, dtype=torch.float32, device=self.inv_freq.device)
        freqs = torch.outer(positions, self.inv_freq)
        angles = torch.cat((freqs, freqs), dim=-1)
        return angles.cos(), angles.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-second, first), dim=-1) * sin


class Attention(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.heads = cfg["num_attention_heads"]
        self.kv_heads = cfg["num_key_value_heads"]
        self.head_dim = cfg["head_dim"]
        hidden = cfg["hidden_size"]
        self.q_proj = nn.Linear(hidden, self.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(hidden, self.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(hidden, self.kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.heads * self.head_dim, hidden, bias=False)

    def split(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        return x.view(x.size(0), x.size(1), heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        q = rotate(self.split(self.q_proj(x), self.heads), cos, sin)
        k = rotate(self.split(self.k_proj(x), self.kv_heads), cos, sin)
        v = self.split(self.v_proj(x), self.kv_heads)
        group = self.heads // self.kv_heads
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(out.transpose(1, 2).reshape(x.size(0), x.size(1), -1))


class FeedForward(nn.Module):
    def __init__(self, hidden: int, intermediate: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.self_attn = Attention(cfg)
        self.mlp = FeedForward(cfg["hidden_size"], cfg["intermediate_size"])
        self.input_layernorm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])
        self.post_attention_layernorm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class Decoder(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.layers = nn.ModuleList([DecoderLayer(cfg) for _ in range(cfg["num_hidden_layers"])])
        self.norm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])
        self.rotary_emb = RotaryEmbedding(cfg["head_dim"], cfg["rope_theta"])

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        cos, sin = self.rotary_emb(input_ids.size(1))
        x = self.embed_tokens(input_ids)
        for layer in self.layers:
            x = layer(x, cos, sin)
        return self.norm(x)


class CausalLM(nn.Module):
    """forward(input_ids int64 [B, T]) -> logits float32 [B, T, vocab]; no cache, no padding."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.model = Decoder(cfg)
        self.lm_head = nn.Linear(cfg["hidden_size"], cfg["vocab_size"], bias=False)
        self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.model(input_ids))


def initialise(model: CausalLM, seed: int) -> None:
    """Random weights under which the next token depends on the whole context.

    With small (trained-model-like) weights the tied embeddings dominate and greedy decoding
    repeats one token forever, which would hide a broken KV cache; a gain of 3 on every
    projection makes greedy continuations varied and context-dependent.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.copy_(1.0 + 0.1 * torch.randn(param.shape, generator=generator))
            elif name == "model.embed_tokens.weight":
                param.copy_(torch.randn(param.shape, generator=generator))
            else:
                scale = PROJECTION_GAIN / math.sqrt(param.shape[-1])
                param.copy_(scale * torch.randn(param.shape, generator=generator))


def greedy(model: nn.Module, ids: torch.Tensor, steps: int) -> list[int]:
    """Greedy continuation by full re-forward: the reference a cached decoder must reproduce."""
    new: list[int] = []
    for _ in range(steps):
        next_id = model(ids)[0, -1].argmax().item()
        new.append(next_id)
        ids = torch.cat([ids, torch.tensor([[next_id]])], dim=1)
    return new


def check_signature(
    loaded: torch.jit.ScriptModule, eager: CausalLM, ids: torch.Tensor, output: Tensor
) -> torch.Tensor:
    """Compares the saved module with the eager one and checks causality and dynamic shapes."""
    logits = loaded(ids)
    check_matches("tiny-lm reloaded", logits, eager(ids), tolerance=1e-5)
    prefix = ids[:, : ids.size(1) // 2]
    check_matches("tiny-lm causal prefix", loaded(prefix), logits[:, : prefix.size(1)], tolerance=1e-4)
    for shape in ((1, 1), (3, 5)):
        if not output.accepts(loaded(torch.randint(0, eager.lm_head.out_features, shape))):
            raise AssertionError(f"tiny-lm: input {shape} gives an output outside {output.metadata()}")
    return logits


def build_tiny_lm(folder: Path, seed: int) -> Artifacts:
    """Writes model.pt, tokenizer.json, config.json and a chat prompt with its greedy continuation."""
    tokenizer = train_tokenizer()
    tokenizer.save(str(folder / "tokenizer.json"))
    config = model_config(tokenizer.get_vocab_size())
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    model = CausalLM(config).eval()
    initialise(model, seed)
    loaded = torch.jit.load(str(save_torchscript(torch.jit.script(model), folder))).eval()

    inputs = [Tensor("input_ids", torch.int64, (-1, -1))]
    outputs = [Tensor("logits", torch.float32, (-1, -1, config["vocab_size"]))]
    prompt = jinja2.Template(CHAT_TEMPLATE).render(messages=SAMPLE_MESSAGES, add_generation_prompt=True)
    ids = torch.tensor([tokenizer.encode(prompt).ids], dtype=torch.int64)
    with torch.no_grad():
        logits = check_signature(loaded, model, ids, outputs[0])
        continuation = greedy(loaded, ids, SAMPLE_NEW_TOKENS)
    sample = {
        "messages": SAMPLE_MESSAGES,
        "prompt": prompt,
        "greedy_ids": continuation,
        "inputs": save_sample(folder, inputs, [ids]),
        "outputs": save_sample(folder, outputs, [logits]),
    }
    return Artifacts(inputs=inputs, outputs=outputs, sample=sample, config=config)
