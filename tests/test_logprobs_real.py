"""Log-probabilities on real backends equal the libraries' own: the built-in GGUF through gemfuse against a
direct llama-cpp-python call that keeps all logits (llama.cpp's engine itself returns the 20 likeliest), and
transformers against the model's own forward pass."""

import asyncio

import pytest

from gemfuse.messages import Message
from gemfuse.models.base import GenerateOptions
from gemfuse.registry import Registry

pytestmark = pytest.mark.heavy

QUESTION = "What is the capital of France?"


def test_llama_cpp_log_probabilities_equal_the_full_distributions():
    """The engine's token log-probabilities against llama-cpp-python's, which keeps every step's logits (another
    build of llama.cpp: compared over the tokens both chose), and the certainty figures marked approximate."""
    from llama_cpp import Llama

    from gemfuse.files import SMOLLM2, resolve_path
    from gemfuse.models.certainty import TOP_K
    from gemfuse.models.llamacpp import LlamaCppModel, LlamaCppSpec

    model = LlamaCppModel("smollm2", LlamaCppSpec(path=SMOLLM2, n_ctx=512))  # no repeat penalty: plain logits
    options = GenerateOptions(max_tokens=12, temperature=0, logprobs=True, top_logprobs=3)
    completion = asyncio.run(model.generate([Message.user(QUESTION)], options))
    engine = model.load().handle_chat_completions({"messages": [{"role": "user", "content": QUESTION}],
                                                   "max_tokens": 12, "temperature": 0, "logprobs": True,
                                                   "top_logprobs": 3})
    asyncio.run(model.aclose())
    own = engine["choices"][0]["logprobs"]["content"]
    assert completion.text == engine["choices"][0]["message"]["content"]
    assert [t.token for t in completion.logprobs] == [t["token"] for t in own]
    # (the second call reads its prompt from the cache: other batch shapes, the last digits move)
    assert [t.logprob for t in completion.logprobs] == pytest.approx([t["logprob"] for t in own], abs=1e-3)
    assert [[a for a, _ in t.top] for t in completion.logprobs] == [[a["token"] for a in t["top_logprobs"]]
                                                                   for t in own]
    direct = Llama(model_path=str(resolve_path(SMOLLM2)), n_ctx=512, logits_all=True, verbose=False)
    reply = direct.create_chat_completion(messages=[{"role": "user", "content": QUESTION}], max_tokens=12,
                                          temperature=0, logprobs=True, top_logprobs=TOP_K)
    theirs = reply["choices"][0]["logprobs"]["content"]
    shared = 0
    while (shared < min(len(theirs), len(completion.logprobs))
           and completion.logprobs[shared].token == theirs[shared]["token"]):
        shared += 1
    assert shared >= 6, (completion.text, reply["choices"][0]["message"]["content"])
    # the log-softmax of the raw logits (not of what a sampler left: greedy would read 0), up to the builds' numerics
    assert [t.logprob for t in completion.logprobs[:shared]] == pytest.approx(
        [t["logprob"] for t in theirs[:shared]], abs=0.25)
    for ours, full in zip(completion.logprobs[:shared], theirs, strict=False):
        assert len(ours.top) == 3 and ours.top[0][0] == full["top_logprobs"][0]["token"]
        # DeepConf's token confidence reads the 20 likeliest: the same 20 give the same figure
        expected = -sum(a["logprob"] for a in full["top_logprobs"]) / TOP_K
        assert ours.approximate and ours.confidence == pytest.approx(expected, abs=0.25)
        assert ours.self_certainty is not None and ours.self_certainty > 0
    assert completion.certainty < 0 and len(completion.logprobs) == completion.usage.completion_tokens


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
