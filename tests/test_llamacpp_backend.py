"""The llama.cpp backend with the two built-in GGUF models."""

import asyncio

import pytest

from gemfuse.errors import ModelLoadError, UnsupportedInputError
from gemfuse.messages import Message
from gemfuse.models.base import GenerateOptions
from gemfuse.models.llamacpp import LlamaCppModel, LlamaCppSpec
from gemfuse.registry import Registry

pytestmark = pytest.mark.heavy  # real models or processes: the full suite only

FRANCE = [Message.user("What is the capital of France?")]
GREEDY = GenerateOptions(max_tokens=40, temperature=0)


@pytest.fixture(scope="module")
def registry():
    registry = Registry.load()
    yield registry
    asyncio.run(registry.aclose())


async def test_smollm2_knows_paris(registry):
    completion = await registry.get("smollm2-135m").generate(FRANCE, GREEDY)
    assert "paris" in completion.text.lower()
    assert completion.usage.prompt_tokens > 5 and 0 < completion.usage.completion_tokens <= 40
    assert completion.finish_reason == "stop" and completion.ttft_s is not None


async def test_gemma_base_model_answers_through_its_plain_template(registry):
    completion = await registry.get("gemma-3-270m").generate(FRANCE, GREEDY)
    assert "paris" in completion.text.lower()
    assert "User:" not in completion.text, "the template's stop sequence ends the turn"


async def test_streaming_gives_deltas_then_usage(registry):
    chunks = [c async for c in registry.get("smollm2-135m").stream(FRANCE, GREEDY)]
    assert sum(1 for c in chunks if c.text) > 2
    deltas = sum(1 for c in chunks if c.text)
    # the engine's count: one token a delta, and the end-of-turn token it sampled
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens in (deltas, deltas + 1)


async def test_options_reach_the_model(registry):
    model = registry.get("smollm2-135m")
    short = await model.generate(FRANCE, GenerateOptions(max_tokens=3, temperature=0))
    assert short.usage.completion_tokens == 3 and short.finish_reason == "length"
    stopped = await model.generate(FRANCE, GenerateOptions(max_tokens=40, temperature=0, stop=["Paris"]))
    assert "Paris" not in stopped.text
    a, b = [await model.generate([Message.user("Write a word.")],
                                 GenerateOptions(max_tokens=12, temperature=1.0, seed=7)) for _ in range(2)]
    assert a.text == b.text, "a fixed seed repeats"


PROMPTS = [f"Tell me one fact about {w}." for w in "cats rivers bread stars snow trains music glass".split()]


async def timed_stream(model, prompt: str, options: GenerateOptions) -> tuple[str, float, float]:
    """(text, first token time, last token time) of one streamed answer."""
    import time

    pieces, first = [], None
    async for chunk in model.stream([Message.user(prompt)], options):
        if chunk.text:
            first = first or time.perf_counter()
            pieces.append(chunk.text)
    return "".join(pieces), first, time.perf_counter()


def most_at_once(spans: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


async def test_concurrent_requests_decode_together_and_equal_their_single_answers(registry):
    model = registry.get("smollm2-135m")
    assert model.slots == 8
    options = GenerateOptions(max_tokens=24, temperature=0)
    alone = [(await timed_stream(model, p, options))[0] for p in PROMPTS]
    together = await asyncio.gather(*(timed_stream(model, p, options) for p in PROMPTS))
    assert [text for text, _, _ in together] == alone, "batched greedy answers equal the single-request ones"
    assert all(alone)
    assert most_at_once([(first, last) for _, first, last in together]) >= 6, "their decoding overlapped"


async def test_slots_bound_the_requests_in_decoding(registry):
    registry.add_spec("two-slots", LlamaCppSpec(path=registry.spec("smollm2-135m").path, n_ctx=512, concurrency=2))
    model = registry.get("two-slots")
    options = GenerateOptions(max_tokens=12, temperature=0)
    together = await asyncio.gather(*(timed_stream(model, p, options) for p in PROMPTS[:6]))
    assert all(text for text, _, _ in together)
    assert most_at_once([(first, last) for _, first, last in together]) == 2
    await model.aclose()


async def test_abandoned_stream_frees_its_slot(registry):
    import time

    registry.add_spec("one-slot", LlamaCppSpec(path=registry.spec("smollm2-135m").path, n_ctx=1024, concurrency=1,
                                               repeat_penalty=1.1))
    model = registry.get("one-slot")
    count = [Message.user("Write a long story about a dragon.")]
    options = GenerateOptions(max_tokens=200, temperature=0)
    start = time.perf_counter()
    full = await model.generate(count, options)
    full_s = time.perf_counter() - start
    assert full.usage.completion_tokens > 150
    start = time.perf_counter()
    async for chunk in model.stream(count, options):
        if chunk.text:
            break  # the consumer walks away after the first delta
    completion = await model.generate(FRANCE, GenerateOptions(max_tokens=5, temperature=0))
    assert completion.usage.completion_tokens > 0
    assert time.perf_counter() - start < full_s / 2, "the abandoned generation was stopped, not run to the end"
    await model.aclose()


async def test_images_are_refused_not_dropped(registry, media):
    with pytest.raises(UnsupportedInputError, match="image part but this model takes only text"):
        await registry.get("smollm2-135m").generate([Message.user("what is it?", images=[media["png"]])])


async def test_missing_file_is_a_load_error(tmp_path):
    model = LlamaCppModel("ghost", LlamaCppSpec(path=str(tmp_path / "ghost.gguf")))
    with pytest.raises(ModelLoadError, match="GGUF file not found"):
        await model.generate(FRANCE)
    assert (await model.check())[0] is False


async def test_two_models_answer_at_once(registry):
    smol, gemma = registry.get("smollm2-135m"), registry.get("gemma-3-270m")
    a, b = await asyncio.gather(smol.generate(FRANCE, GREEDY), gemma.generate(FRANCE, GREEDY))
    assert "paris" in a.text.lower() and "paris" in b.text.lower()
