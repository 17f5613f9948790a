#!/usr/bin/env python3
"""Talks to an exported model using only its folder, the way modelplane-runtime does.

    python examples/llm/chat.py "What is the capital of France?"
    python examples/llm/chat.py --model examples/models/tiny-llama --max-tokens 8 "Hi"

The prompt is the config.json chat template rendered with Jinja (trim_blocks,
lstrip_blocks, as transformers renders it) and encoded with tokenizer.json;
no transformers involved. Greedy decoding through the contract's ``step``.
"""

import argparse
import json
import pathlib
import sys
from typing import Dict, List

import jinja2
import torch
from tokenizers import Tokenizer

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from step_loop import generate_alone  # noqa: E402


class ChatModel:
    """An exported model folder: TorchScript module, tokenizer and chat template."""

    def __init__(self, folder: pathlib.Path):
        self.config = json.loads((folder / "config.json").read_text())
        self.module = torch.jit.load(str(folder / self.config["model_file"]))
        self.tokenizer = Tokenizer.from_file(str(folder / self.config["tokenizer_file"]))
        env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
        self.template = env.from_string(self.config["chat_template"])

    def prompt_ids(self, messages: List[Dict[str, str]]) -> List[int]:
        """Token ids of the rendered conversation, ready for the assistant's turn."""
        text = self.template.render(
            messages=messages,
            add_generation_prompt=True,
            bos_token=self.config["bos_token"],
            eos_token=self.config["eos_token"],
        )
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def reply(self, messages: List[Dict[str, str]], max_tokens: int = 128) -> str:
        """The assistant's greedy reply, without the end-of-turn token."""
        tokens = generate_alone(self.module, self.prompt_ids(messages), max_tokens, self.config["eos_token_ids"])
        return self.tokenizer.decode(tokens, skip_special_tokens=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("question")
    parser.add_argument("--model", type=pathlib.Path, default=HERE.parent / "models" / "smollm2")
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()
    torch._C._set_graph_executor_optimize(False)
    print(ChatModel(args.model).reply([{"role": "user", "content": args.question}], args.max_tokens))
    return 0


if __name__ == "__main__":
    sys.exit(main())
