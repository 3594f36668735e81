"""Log-probabilities on real backends equal the libraries' own: the built-in GGUF through gemfuse against a
direct llama-cpp-python call that keeps all logits, and transformers against the model's own forward pass."""

import asyncio

import pytest

from gemfuse.messages import Message
from gemfuse.models.base import GenerateOptions
from gemfuse.registry import Registry

pytestmark = pytest.mark.heavy

QUESTION = "What is the capital of France?"


def test_llama_cpp_log_probabilities_equal_a_direct_call():
    from llama_cpp import Llama

    from gemfuse.files import SMOLLM2, resolve_path

    registry = Registry.load()

    async def ours():
        try:
            return await registry.get("smollm2-135m").generate(
                [Message.user(QUESTION)], GenerateOptions(max_tokens=12, temperature=0, logprobs=True, top_logprobs=3))
        finally:
            await registry.aclose()

    completion = asyncio.run(ours())
    direct = Llama(model_path=str(resolve_path(SMOLLM2)), n_ctx=512, logits_all=True, verbose=False)
    reply = direct.create_chat_completion(messages=[{"role": "user", "content": QUESTION}], max_tokens=12,
                                          temperature=0, repeat_penalty=1.1, logprobs=True, top_logprobs=3)
    theirs = reply["choices"][0]["logprobs"]["content"]
    assert completion.text == reply["choices"][0]["message"]["content"]
    assert [t.token for t in completion.logprobs] == [t["token"] for t in theirs]
    assert [t.logprob for t in completion.logprobs] == pytest.approx([t["logprob"] for t in theirs], abs=1e-3)
    assert [[a for a, _ in t.top] for t in completion.logprobs] == [[a["token"] for a in t["top_logprobs"]]
                                                                   for t in theirs]
    assert completion.certainty < 0 and len(completion.logprobs) == 12


def test_transformers_log_probabilities_equal_the_forward_pass(tiny_model):
    import torch

    from gemfuse.models.transformers import TransformersSpec

    registry = Registry.load()
    registry.add_spec("tiny", TransformersSpec(path=str(tiny_model("gemma3")), dtype="float32"))
    model = registry.get("tiny")

    async def ours():
        return await model.generate([Message.user(QUESTION)], GenerateOptions(max_tokens=8, temperature=0,
                                                                               logprobs=True, top_logprobs=2))

    try:
        completion = asyncio.run(ours())
        network, processor, device = model.load()
        prompt = model._inputs([Message.user(QUESTION)], processor, device)
        start = prompt["input_ids"].shape[1]
        with torch.no_grad():  # greedy again, for the token ids; then one forward pass over prompt and answer
            ids = network.generate(**prompt, max_new_tokens=len(completion.logprobs), do_sample=False)
            logits = network(input_ids=ids).logits[0].float()
        answer = ids[0, start:].tolist()
        expected = [float(torch.log_softmax(logits[start - 1 + i], -1)[token]) for i, token in enumerate(answer)]
    finally:
        asyncio.run(registry.aclose())
    assert completion.logprobs, completion
    assert [t.logprob for t in completion.logprobs] == pytest.approx(expected, abs=1e-3)
    assert all(t.top[0][1] >= t.logprob - 1e-6 for t in completion.logprobs), "the likeliest alternative comes first"
