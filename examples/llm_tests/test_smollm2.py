"""The exported SmolLM2-135M-Instruct decodes exactly like transformers' generate."""

import jinja2
import pytest
from tokenizers import Tokenizer

from chat import ChatModel
from step_loop import Request, SlotScheduler, generate_alone

MAX_NEW = 32
QUESTIONS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "List three prime numbers.",
]
COMPLETION = "The three primary colors are"


@pytest.fixture(scope="module")
def cases(smollm2_hf, hf_greedy):
    """Prompt token ids (chat-templated questions and one plain completion) with
    transformers' greedy output for each."""
    model, tokenizer = smollm2_hf
    prompts = [
        tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True)["input_ids"]
        for q in QUESTIONS
    ]
    prompts.append(tokenizer(COMPLETION)["input_ids"])
    return [(p, hf_greedy(model, p, MAX_NEW)) for p in prompts]


def test_france_question_is_answered_with_paris(smollm2, smollm2_hf, cases):
    _, tokenizer = smollm2_hf
    prompt, expected = cases[0]
    tokens = generate_alone(smollm2.module, prompt, MAX_NEW, smollm2.eos)
    assert tokens == expected
    assert tokens[-1] in smollm2.eos
    assert tokenizer.decode(tokens, skip_special_tokens=True) == "The capital of France is Paris."


@pytest.mark.parametrize("index", range(1, len(QUESTIONS) + 1))
def test_greedy_tokens_equal_transformers_generate(smollm2, cases, index):
    prompt, expected = cases[index]
    assert generate_alone(smollm2.module, prompt, MAX_NEW, smollm2.eos) == expected


def test_continuous_batching_equals_transformers_generate(smollm2, cases):
    # Requests join at different steps; two slots for four requests means slot reuse,
    # and 16-token prefill chunks run beside the other rows' decode steps.
    requests = [Request(p, MAX_NEW, join_step=j) for (p, _), j in zip(cases, [0, 3, 4, 9])]
    scheduler = SlotScheduler(smollm2.module, slots=2, max_context=128, eos_ids=smollm2.eos, prefill_chunk=16)
    assert scheduler.run(requests) == [expected for _, expected in cases]


def test_exported_folder_alone_answers_the_france_question(smollm2):
    """The runtime's path: config.json template + tokenizer.json + model.pt, no transformers."""
    chat = ChatModel(smollm2.folder)
    assert chat.reply([{"role": "user", "content": QUESTIONS[0]}], MAX_NEW) == "The capital of France is Paris."


def test_config_json_chat_template_and_tokenizer_json_reproduce_transformers(smollm2, smollm2_hf):
    """What the Rust runtime does (Jinja render + tokenizer.json) gives transformers' prompt ids."""
    _, tokenizer = smollm2_hf
    config = smollm2.config
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    template = env.from_string(config["chat_template"])
    fast = Tokenizer.from_file(str(smollm2.folder / config["tokenizer_file"]))
    conversations = [
        [{"role": "user", "content": QUESTIONS[0]}],
        [
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "Hi!"},
            {"role": "assistant", "content": "Bonjour !"},
            {"role": "user", "content": "Ça va ?"},
        ],
    ]
    for messages in conversations:
        text = template.render(
            messages=messages, add_generation_prompt=True, bos_token=config["bos_token"], eos_token=config["eos_token"]
        )
        expected = tokenizer.apply_chat_template(messages, add_generation_prompt=True)["input_ids"]
        assert fast.encode(text, add_special_tokens=False).ids == expected
    assert config["eos_token_ids"] == [tokenizer.convert_tokens_to_ids("<|im_end|>")]
