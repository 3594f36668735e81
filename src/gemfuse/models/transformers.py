"""Hugging Face transformers: a local folder or hub id, text or multimodal Gemma 3 / 3n / 4, optional LoRA.

The device is picked cuda > mps > cpu with a dtype per device; generation runs on the model's own worker
thread and streams through a TextStreamer subclass that hands each piece to the event loop.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ..devices import bitsandbytes_config, pick_device, pick_dtype
from ..errors import ModelLoadError
from ..messages import AudioPart, ImagePart, Message, TextPart
from ..processors import declared_modalities, load_processor, modalities_of
from .base import GenerateOptions, StreamChunk, Usage
from .batcher import Batcher, Call
from .gemma4_calls import CALL_END, CALL_START, QUOTE, takes_tools, template_turns
from .local import Cancelled, LocalModel, StopFilter
from .logprobs import answer_logprobs
from .spec import PLAIN_CHAT_TEMPLATE, LocalSpec
from .transformers_batch import batch_key, produce_batch


class TransformersSpec(LocalSpec):
    backend: Literal["transformers"] = "transformers"
    path: str = Field(description="a local model folder, or a hub id such as google/gemma-3-4b-it")
    gguf_file: str | None = Field(None, description="load and dequantise this GGUF file inside `path`")
    adapter: str | None = Field(None, description="a LoRA adapter folder (PEFT) applied on top")
    device: Literal["auto", "cuda", "mps", "cpu"] = "auto"
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    revision: str | None = None
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: torch's choice)")
    quantize: Literal["none", "int8", "8bit", "4bit"] = Field(
        "none", description="int8: int8 weight-only (torchao), CPU or GPU; 8bit / 4bit: CUDA, bitsandbytes "
                            "LLM.int8 / NF4")


class StopReached(Exception):
    """Raised from the streamer to end generate() once a stop sequence has been seen."""


class TransformersModel(LocalModel):
    spec: TransformersSpec
    backend = "transformers"
    library, extra = "transformers", "transformers"
    Spec = TransformersSpec

    def __init__(self, name: str, spec: TransformersSpec):
        super().__init__(name, spec)
        self._batcher = Batcher(self.slots, self._run_batch)
        self._loaded: tuple[Any, Any, str] | None = None  # model, processor-or-tokenizer, device
        self._native: bool | None = None  # its chat template takes tools (read once loaded)
        self._lock = threading.Lock()
        self.modalities = declared_modalities(Path(spec.path).expanduser() / "config.json")

    def where(self) -> str:
        return self.spec.path + (f" + {self.spec.adapter}" if self.spec.adapter else "")

    # -- loading ----------------------------------------------------------------------------------------------
    def load(self):
        """Load once (thread-safe); returns (model, processor or tokenizer, device)."""
        with self._lock:
            if self._loaded is None:
                self._loaded = self._load()
            return self._loaded

    def _load(self):
        import torch

        from .._torchvision import MODEL_LOADING, import_transformers

        transformers = import_transformers()

        if self.spec.threads:
            torch.set_num_threads(self.spec.threads)
        path = self._source()
        kwargs: dict[str, Any] = {"revision": self.spec.revision} if self.spec.revision else {}
        if self.spec.gguf_file:
            kwargs["gguf_file"] = self.spec.gguf_file
        device = pick_device(self.spec.device)
        dtype = pick_dtype(device, self.spec.dtype)
        quantize = self.spec.quantize
        placement: dict[str, Any] = {}
        if quantize in ("8bit", "4bit"):  # bitsandbytes quantises while loading, onto the GPU
            placement = {"quantization_config": bitsandbytes_config(quantize, device, dtype), "device_map": {"": device}}
        try:
            self.modalities = modalities_of(transformers.AutoConfig.from_pretrained(path, **kwargs).to_dict())
            auto = (transformers.AutoModelForImageTextToText if len(self.modalities) > 1
                    else transformers.AutoModelForCausalLM)
            with MODEL_LOADING:
                model = auto.from_pretrained(path, dtype=dtype, **kwargs, **placement)
            processor = load_processor(path, self.modalities, **kwargs)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot load transformers model from {path}: {exc}", model=self.name) from exc
        if self.spec.adapter:
            try:
                from peft import PeftModel

                from ..files import adapter_folder

                with MODEL_LOADING:
                    model = PeftModel.from_pretrained(model, str(adapter_folder(self.spec.adapter)))
                if not placement:  # folded into the weights: decoding pays no extra LoRA matmuls (~25% here)
                    model = model.merge_and_unload()
            except (OSError, ValueError) as exc:
                raise ModelLoadError(f"cannot load adapter {self.spec.adapter}: {exc}", model=self.name) from exc
        if not placement:
            model.to(device)
        if quantize == "int8":
            model = quantize_int8_weights(model)
        model.eval()
        return model, processor, device

    def _source(self) -> str:
        """The folder to load: `package:` paths name a GGUF that is converted once into the cache."""
        if not self.spec.path.startswith("package:"):
            return self.spec.path
        from ..files import hf_copy_of_gguf, resolve_path

        return str(hf_copy_of_gguf(resolve_path(self.spec.path)))

    # -- rendering --------------------------------------------------------------------------------------------
    def _conversation(self, messages: Sequence[Message], processor) -> list[dict]:
        """Our messages in the content-list shape HF chat templates and processors read."""
        sampling_rate = getattr(getattr(processor, "feature_extractor", None), "sampling_rate", 16_000)
        multimodal = hasattr(processor, "image_processor") or hasattr(processor, "feature_extractor")
        conversation: list[dict[str, Any]] = []
        for message, turn in zip(messages, template_turns(messages), strict=True):
            if not multimodal or message.role == "tool":  # a result as text: templates write it whole
                conversation.append(turn)  # with its calls or the call it answers, for templates that take tools
                continue
            content: list[dict[str, Any]] = []
            for part in message.parts:
                if isinstance(part, TextPart):
                    content.append({"type": "text", "text": part.text})
                elif isinstance(part, ImagePart):
                    content.append({"type": "image", "image": part.to_pil()})
                elif isinstance(part, AudioPart):
                    content.append({"type": "audio", "audio": part.to_waveform(sampling_rate)})
            conversation.append({**turn, "content": content})
        return conversation

    def _inputs(self, messages: Sequence[Message], processor, device: str, tools=None):
        conversation = self._conversation(messages, processor)
        given = {"tools": [tool.to_openai() for tool in tools.tools]} if tools is not None and tools.active else {}
        inputs = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True,
                                               return_dict=True, return_tensors="pt",
                                               chat_template=self._template(processor), **given)
        return {k: v.to(device) for k, v in inputs.items()}

    def _template(self, processor) -> str | None:
        tokenizer = getattr(processor, "tokenizer", processor)
        if self.spec.chat_template is None and not (getattr(processor, "chat_template", None)
                                                    or tokenizer.chat_template):
            return PLAIN_CHAT_TEMPLATE
        return self.spec.chat_template

    def _batch_inputs(self, conversations: list[Sequence[Message]], processor, device: str):
        """Several text conversations, left-padded into one batch."""
        tokenizer = getattr(processor, "tokenizer", processor)
        side, tokenizer.padding_side = tokenizer.padding_side, "left"
        # a processor takes its own call's arguments in `processor_kwargs`; a tokenizer takes them as they are
        padding = {"processor_kwargs": {"padding": True}} if tokenizer is not processor else {"padding": True}
        try:
            inputs = processor.apply_chat_template([self._conversation(m, processor) for m in conversations],
                                                   add_generation_prompt=True, tokenize=True, return_dict=True,
                                                   return_tensors="pt", chat_template=self._template(processor),
                                                   **padding)
        finally:
            tokenizer.padding_side = side
        return {k: v.to(device) for k, v in inputs.items()}

    def end_ids(self, model, tokenizer) -> list[int]:
        """The tokens that end an answer: the config's, and Gemma's <end_of_turn> (a config converted from a GGUF
        may list only <eos>)."""
        eos = model.generation_config.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_turn>")
        if isinstance(end_of_turn, int) and end_of_turn != tokenizer.unk_token_id and end_of_turn not in eos:
            eos.append(end_of_turn)
        return eos

    # -- generation -------------------------------------------------------------------------------------------
    def _produce(self, messages, options: GenerateOptions, emit, cancelled: threading.Event) -> None:
        if cancelled.is_set():  # the consumer left while this call waited
            raise Cancelled()
        self._batcher.submit(Call((messages, options, emit), batch_key(messages, options), cancelled))

    def _run_batch(self, calls: list[Call]) -> None:
        """On one of the calling threads, while the others wait: one request as it always ran, several as one
        padded batch."""
        if len(calls) == 1:
            messages, options, emit = calls[0].payload
            self._produce_one(messages, options, emit, calls[0].cancelled)
            return
        model, processor, _ = self.load()
        produce_batch(self, calls, self.end_ids(model, getattr(processor, "tokenizer", processor)))

    def _produce_one(self, messages, options: GenerateOptions, emit, cancelled: threading.Event) -> None:
        import torch
        from transformers import TextStreamer

        model, processor, device = self.load()
        tokenizer = getattr(processor, "tokenizer", processor)
        # tools for the model's own template: its answer is read whole, its call tokens kept (structured.py)
        native = options.tools is not None and options.tools.active
        inputs = self._inputs(messages, processor, device, options.tools)
        prompt_tokens = int(inputs["input_ids"].shape[1])
        counted = [0]
        emitted: list[str] = []
        generated: list[int] = []
        stops = StopFilter([*options.stop, *self.spec.stop])

        class Streamer(TextStreamer):
            def put(self, value):
                if cancelled.is_set():  # the consumer left: abort generate() from inside its loop
                    raise Cancelled()
                if self.next_tokens_are_prompt:
                    return super().put(value)
                counted[0] += int(value.numel())
                if native:
                    generated.extend(value.view(-1).tolist())
                super().put(value)
                if stops.stopped and not options.logprobs:  # our own filter saw a stop sequence: end generate()
                    raise StopReached()

            def on_finalized_text(self, text: str, stream_end: bool = False):
                text = stops.feed(text) + (stops.flush() if stream_end else "")
                if text:
                    emitted.append(text)
                    if not native:
                        emit(StreamChunk(text=text))

        sampling = options.temperature is None or options.temperature > 0
        eos = self.end_ids(model, tokenizer)
        kwargs: dict[str, Any] = dict(max_new_tokens=options.max_tokens, do_sample=sampling,
                                      streamer=Streamer(tokenizer, skip_prompt=True, skip_special_tokens=True),
                                      eos_token_id=eos or None)
        if sampling:
            kwargs.update(temperature=options.temperature or 1.0, top_p=options.top_p or 1.0)
        # Stop sequences are watched by our streaming filter, not generate()'s stop_strings: with Gemma's 262k
        # vocabulary those cost about 10x the decode time on a CPU (measured 20 -> 1.7 tok/s in bf16).
        if options.json_schema is not None:  # decoded under the schema's grammar
            from .grammar import GrammarProcessor

            kwargs["logits_processor"] = [GrammarProcessor(tokenizer, [options.json_schema], eos)]
        if options.seed is not None:
            torch.manual_seed(options.seed)
        if options.logprobs:  # the raw logits of each step (after Gemma's soft-cap, before any sampling setting)
            from transformers import StoppingCriteria, StoppingCriteriaList

            class Stopped(StoppingCriteria):  # a stop sequence ends generate() normally, so its logits come back
                def __call__(self, input_ids, scores, **kwargs):
                    return torch.full((input_ids.shape[0],), stops.stopped, dtype=torch.bool, device=input_ids.device)

            kwargs.update(output_logits=True, return_dict_in_generate=True,
                          stopping_criteria=StoppingCriteriaList([Stopped()]))
        stopped, output = False, None
        with torch.inference_mode():
            try:
                output = model.generate(**inputs, **kwargs)
            except StopReached:
                stopped = True
        stopped = stopped or stops.stopped
        finish = "length" if counted[0] >= options.max_tokens and not stopped else "stop"
        logprobs = None
        if options.logprobs:
            logprobs = (answer_logprobs(output, prompt_tokens, tokenizer, options.top_logprobs or 0, "".join(emitted))
                        if output is not None else None)  # a stop sequence ended generate() before it returned
        whole = answer_with_call_tokens(tokenizer, generated) if native else ""
        emit(StreamChunk(text=whole, finish_reason=finish, usage=Usage(prompt_tokens, counted[0]), logprobs=logprobs))

    async def _prepare(self, messages: Sequence[Message]) -> None:
        if self._loaded is None:  # a hub model's modalities are known once its config is loaded
            await self._bridge.call(self.load)
        self.check_input(messages)

    async def _takes_tools(self, messages: Sequence[Message]) -> bool:
        if self._loaded is None:
            await self._bridge.call(self.load)
        if self._native is None:  # once per load: get_vocab() builds Gemma's 262k-entry dict
            processor = self.load()[1]
            self._native = self.spec.chat_template is None and takes_tools(getattr(processor, "tokenizer", processor))
        return self._native

    async def check(self) -> tuple[bool, str]:
        ok, detail = await super().check()
        if ok or self.spec.path.startswith("package:") or "not installed" in detail:
            return ok, detail
        if self.spec.path.count("/") == 1 and not self.spec.path.startswith((".", "/", "~")):
            return True, "hub id (downloads on first use)"
        return False, detail

    async def aclose(self) -> None:
        await super().aclose()
        self._loaded = self._native = None


def answer_with_call_tokens(tokenizer, ids: list[int]) -> str:
    """The answer's text with Gemma 4's call and string marks kept and every other special token left out."""
    special = set(tokenizer.all_special_ids) - {tokenizer.convert_tokens_to_ids(t) for t in (CALL_START, CALL_END, QUOTE)}
    return tokenizer.decode([i for i in ids if i not in special], skip_special_tokens=False)


def quantize_int8_weights(model):
    """torchao int8 weight-only: every linear layer but the output head (often tied to the embedding, which
    stays 16-bit) keeps int8 weights with a scale per row; the 16-bit weights it replaces go back to the OS."""
    import ctypes
    import gc
    import logging

    import torch

    logging.getLogger("torchao").setLevel(logging.ERROR)  # its optional CUDA kernels report failing to load
    try:
        from torchao.quantization import Int8WeightOnlyConfig, quantize_
    except ImportError:
        raise ModelLoadError("quantize = 'int8' needs torchao: pip install torchao") from None
    head = model.get_output_embeddings()
    quantize_(model, Int8WeightOnlyConfig(), filter_fn=lambda module, name: isinstance(module, torch.nn.Linear)
              and module is not head and "lora_" not in name)  # a LoRA adapter keeps its own precision
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the freed memory is reused by the process instead
        pass
    return model
