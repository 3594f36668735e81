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
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == sum(1 for c in chunks if c.text)


async def test_options_reach_the_model(registry):
    model = registry.get("smollm2-135m")
    short = await model.generate(FRANCE, GenerateOptions(max_tokens=3, temperature=0))
    assert short.usage.completion_tokens == 3 and short.finish_reason == "length"
    stopped = await model.generate(FRANCE, GenerateOptions(max_tokens=40, temperature=0, stop=["Paris"]))
    assert "Paris" not in stopped.text
    a, b = [await model.generate([Message.user("Write a word.")],
                                 GenerateOptions(max_tokens=12, temperature=1.0, seed=7)) for _ in range(2)]
    assert a.text == b.text, "a fixed seed repeats"


async def test_calls_are_serialised_and_all_complete(registry):
    model = registry.get("smollm2-135m")
    results = await asyncio.gather(*(model.generate([Message.user(f"Say the number {i}.")],
                                                    GenerateOptions(max_tokens=8, temperature=0)) for i in range(3)))
    assert all(r.usage.completion_tokens > 0 for r in results)


async def test_abandoned_stream_stops_generating(registry):
    import time

    model = registry.get("smollm2-135m")
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


async def test_images_are_refused_not_dropped(registry, media):
    with pytest.raises(UnsupportedInputError, match="image part but this model takes only text"):
        await registry.get("smollm2-135m").generate([Message.user("what is it?", images=[media["png"]])])


async def test_missing_file_is_a_load_error(tmp_path):
    model = LlamaCppModel("ghost", LlamaCppSpec(path=str(tmp_path / "ghost.gguf")))
    with pytest.raises(ModelLoadError, match="GGUF file not found"):
        await model.generate(FRANCE)
    assert (await model.check())[0] is False


async def test_all_llamacpp_models_share_one_driver_thread(registry):
    """Two threads driving llama.cpp slow every later call ~2.8x, so models queue on one thread."""
    smol, gemma = registry.get("smollm2-135m"), registry.get("gemma-3-270m")
    assert smol._bridge._executor is gemma._bridge._executor
    a, b = await asyncio.gather(smol.generate(FRANCE, GREEDY), gemma.generate(FRANCE, GREEDY))
    assert "paris" in a.text.lower() and "paris" in b.text.lower()
