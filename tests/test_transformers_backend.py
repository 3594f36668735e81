"""The transformers backend: tiny random-weight Gemma 3 / 3n / 4 with images and audio, a LoRA adapter, and the
built-in SmolLM2 read from its GGUF through a cached safetensors copy."""

import asyncio
import json

import pytest

from gemfuse.devices import pick_device, pick_dtype
from gemfuse.errors import MessageError, ModelLoadError, UnsupportedInputError
from gemfuse.messages import AudioPart, Message
from gemfuse.models.base import GenerateOptions
from gemfuse.models.transformers import TransformersModel, TransformersSpec
from gemfuse.registry import Registry

pytestmark = pytest.mark.heavy  # real models or processes: the full suite only

GREEDY = GenerateOptions(max_tokens=6, temperature=0)


def tiny(folder, **spec) -> TransformersModel:
    return TransformersModel("tiny", TransformersSpec(path=str(folder), **spec))


async def prompt_tokens(model, message) -> int:
    completion = await model.generate([message], GREEDY)
    assert completion.usage.completion_tokens > 0
    return completion.usage.prompt_tokens


@pytest.mark.parametrize("family, modalities, image_tokens", [
    ("gemma3", {"text", "image"}, 4),
    ("gemma3n", {"text", "image", "audio"}, 16),
    ("gemma4", {"text", "image", "audio"}, None),
])
async def test_tiny_families_take_their_media(tiny_model, media, family, modalities, image_tokens):
    model = tiny(tiny_model(family))
    text_only = await prompt_tokens(model, Message.user("Describe"))
    assert model.modalities == modalities
    with_image = await prompt_tokens(model, Message.user("Describe", images=[media["png"]]))
    if image_tokens is not None:
        # soft tokens plus begin/end markers and the processor's blank lines
        assert with_image - text_only >= image_tokens + 2
    else:
        assert with_image - text_only > 2
    if "audio" in modalities:
        with_audio = await prompt_tokens(model, Message.user("Transcribe", audio=[media["wav44k"]]))
        assert with_audio - text_only > 2, "44.1 kHz audio was resampled and turned into audio tokens"
    else:
        with pytest.raises(UnsupportedInputError, match="audio part"):
            await model.generate([Message.user("Transcribe", audio=[media["wav"]])], GREEDY)
    await model.aclose()


async def test_streaming_system_prompt_and_multi_turn(tiny_model):
    model = tiny(tiny_model("gemma3"))
    messages = [Message.system("Be brief."), Message.user("Hi"), Message.assistant("Hello"), Message.user("Again")]
    chunks = [c async for c in model.stream(messages, GenerateOptions(max_tokens=8, temperature=0))]
    assert chunks[-1].usage.completion_tokens == 8 and chunks[-1].finish_reason == "length"
    single = await model.generate([Message.user("Again")], GREEDY)
    assert chunks[-1].usage.prompt_tokens > single.usage.prompt_tokens + 5, "history and system were rendered"
    await model.aclose()


async def test_seed_makes_sampling_repeatable(tiny_model):
    model = tiny(tiny_model("gemma3"))
    options = GenerateOptions(max_tokens=10, temperature=1.0, seed=3)
    a = await model.generate([Message.user("Hi")], options)
    b = await model.generate([Message.user("Hi")], options)
    assert a.text == b.text
    await model.aclose()


async def test_lora_adapter_changes_the_output(tiny_model, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    folder = tiny_model("gemma3")
    base = AutoModelForImageTextToText.from_pretrained(folder)
    torch.manual_seed(1)
    lora = get_peft_model(base, LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj", "down_proj"],
                                           init_lora_weights=False))
    lora.save_pretrained(tmp_path / "adapter")
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["r"] == 4

    question = [Message.user("Hello there")]
    options = GenerateOptions(max_tokens=12, temperature=0)
    plain = tiny(folder)
    adapted = tiny(folder, adapter=str(tmp_path / "adapter"))
    plain_logits_text = (await plain.generate(question, options)).text
    adapted_text = (await adapted.generate(question, options)).text
    assert adapted_text != plain_logits_text
    assert "+ " in adapted.where()
    with pytest.raises(ModelLoadError, match="cannot load adapter"):
        await tiny(folder, adapter=str(tmp_path / "nope")).generate(question, options)


def test_device_and_dtype_policy():
    import torch

    assert pick_device("cpu") == "cpu"
    assert pick_device("auto") in ("cuda", "mps", "cpu")
    if not torch.cuda.is_available():
        assert pick_device("auto") != "cuda"
    assert pick_dtype("cpu", "float32") == torch.float32
    assert pick_dtype("mps") == torch.float16
    assert pick_dtype("cpu") in (torch.bfloat16, torch.float32)


async def test_missing_folder_is_a_load_error(tmp_path):
    model = tiny(tmp_path / "nothing-here")
    assert (await model.check())[0] is False
    with pytest.raises(ModelLoadError):
        await model.generate([Message.user("hi")])


async def test_builtin_smollm2_on_transformers_knows_paris():
    registry = Registry.load()
    model = registry.get("smollm2-135m-hf")
    completion = await model.generate([Message.user("What is the capital of France?")],
                                      GenerateOptions(max_tokens=30, temperature=0))
    assert "paris" in completion.text.lower()
    await registry.aclose()


def test_wav_header_garbage_is_a_clear_error(tiny_model):
    model = tiny(tiny_model("gemma3n"))
    broken = Message("user", [AudioPart(data=b"RIFF\x00\x00\x00\x00WAVEgarbage", format="wav")])
    with pytest.raises(MessageError, match="cannot decode"):
        asyncio.run(model.generate([broken], GREEDY))


async def test_abandoned_stream_stops_generating(tiny_model):
    import time

    model = tiny(tiny_model("gemma3"))
    hf_model, _, _ = await model._bridge.call(model.load)
    hf_model.generation_config.eos_token_id = None  # never stops by itself: 1500 tokens take seconds
    options = GenerateOptions(max_tokens=1500, temperature=0)
    start = time.perf_counter()
    full = await model.generate([Message.user("Hi")], options)
    full_s = time.perf_counter() - start
    assert full.usage.completion_tokens == 1500
    start = time.perf_counter()
    async for chunk in model.stream([Message.user("Hi")], options):
        if chunk.text:
            break  # the consumer walks away
    await model.generate([Message.user("Hi")], GREEDY)
    assert time.perf_counter() - start < full_s / 3, "the abandoned generation was stopped, not run to the end"
    await model.aclose()


async def timed(model, prompt: str, options: GenerateOptions):
    """(completion, first text time, end time) of one streamed answer."""
    import time

    from gemfuse.models.base import collect

    first = []
    completion = await collect("tiny", model.stream([Message.user(prompt)], options),
                               on_text=lambda _: first.append(time.perf_counter()))
    return completion, first[0] if first else None, time.perf_counter()


@pytest.mark.parametrize("family", ["gemma3", "gemma4"])
async def test_concurrent_text_requests_decode_as_one_batch_and_equal_their_single_answers(tiny_model, family):
    model = tiny(tiny_model(family), concurrency=8, dtype="float32")
    hf_model, _, _ = await model._bridge.call(model.load)
    calls = []
    original = hf_model.generate

    def counted(*args, **kwargs):
        calls.append(int(kwargs["input_ids"].shape[0]))
        return original(*args, **kwargs)

    hf_model.generate = counted
    prompts = [f"Say {'something ' * i}now." for i in range(8)]  # different lengths: left padding
    lengths = [5, 9, 3, 12, 7, 1, 10, 6]
    alone = [(await timed(model, p, GenerateOptions(max_tokens=n, temperature=0, logprobs=True)))[0]
             for p, n in zip(prompts, lengths, strict=True)]
    assert calls == [1] * 8
    together = await asyncio.gather(*(timed(model, p, GenerateOptions(max_tokens=n, temperature=0, logprobs=True))
                                      for p, n in zip(prompts, lengths, strict=True)))
    assert len(calls) < 8 + 8 and max(calls) >= 4, f"batched: {calls[8:]}"
    for single, (batched, _, _) in zip(alone, together, strict=True):
        assert batched.text == single.text and batched.usage.completion_tokens == single.usage.completion_tokens
        assert batched.usage.prompt_tokens == single.usage.prompt_tokens
        assert batched.finish_reason == single.finish_reason
        assert [t.token for t in batched.logprobs] == [t.token for t in single.logprobs]
        assert [t.logprob for t in batched.logprobs] == pytest.approx([t.logprob for t in single.logprobs], abs=1e-3)
    await model.aclose()


async def test_batch_slots_bound_and_a_leaving_consumer_does_not_stop_the_others(tiny_model):
    model = tiny(tiny_model("gemma3"), concurrency=3)
    hf_model, _, _ = await model._bridge.call(model.load)
    sizes = []
    original = hf_model.generate
    hf_model.generation_config.eos_token_id = None  # every row runs to its length

    def counted(*args, **kwargs):
        sizes.append(int(kwargs["input_ids"].shape[0]))
        return original(*args, **kwargs)

    hf_model.generate = counted
    options = GenerateOptions(max_tokens=40, temperature=0)

    async def leave_early():
        async for chunk in model.stream([Message.user("Hi there")], options):
            if chunk.text:
                return "left"
        return "never"

    results = await asyncio.gather(leave_early(), *(model.generate([Message.user(f"Hi {i}")], options)
                                                    for i in range(5)))
    assert results[0] == "left" and max(sizes) <= 3
    assert all(r.usage.completion_tokens == 40 and r.finish_reason == "length" for r in results[1:])
    await model.aclose()
