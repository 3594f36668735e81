"""GGUF models in-process through llama-cpp-python, with the chat template stored in the GGUF.

A llama.cpp context is not re-entrant, and once two OS threads have driven llama.cpp in one process every
later call runs about 2.8x slower (two OpenMP thread teams contend for the cores; measured here with SmolLM2:
87 -> 31 tok/s). So every llama.cpp model in the process runs on one shared worker thread, FIFO.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ..errors import ModelLoadError
from ..messages import Message
from ..quiet import quiet_llama_cpp
from .base import GenerateOptions, StreamChunk, TokenLogprob, Usage
from .local import LocalModel, WorkerBridge, quiet_stderr
from .logprobs import LogprobRecorder
from .spec import LocalSpec


class LlamaCppSpec(LocalSpec):
    backend: Literal["llamacpp"] = "llamacpp"
    path: str = Field(description="a .gguf file, or package:MODULE[/FILE] for a GGUF shipped in a Python package")
    n_ctx: int = Field(4096, ge=128, description="context window in tokens")
    threads: int | None = Field(None, ge=1, description="CPU threads (default: all cores)")
    n_gpu_layers: int = Field(0, description="layers to offload to a GPU build of llama.cpp (-1: all)")
    repeat_penalty: float | None = Field(None, gt=0, description="penalise repeats (1.0: off; llama.cpp's default)")
    chat_format: str | None = Field(None, description="a llama-cpp-python chat format name (e.g. chatml)")


_shared_executor: ThreadPoolExecutor | None = None
_shared_lock = threading.Lock()


def llama_thread() -> ThreadPoolExecutor:
    """The one thread that drives llama.cpp in this process."""
    global _shared_executor
    with _shared_lock:
        if _shared_executor is None:
            _shared_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gemfuse-llamacpp")
        return _shared_executor


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class LlamaCppLogprobs(LogprobRecorder):
    """llama.cpp's logits processor: called with each step's logits; the token the step before chose is then
    the last one evaluated."""

    def __init__(self, llama, top: int):
        super().__init__(top, lambda i: llama.detokenize([i], special=False).decode("utf-8", "replace"))
        self.llama = llama
        self.first = True

    def __call__(self, input_ids, scores):
        previous = None if self.first else int(self.llama.input_ids[self.llama.n_tokens - 1])
        self.first = False
        self.step(previous, scores)
        return scores

    def finish(self, llama, text: str, finish: str | None) -> list[TokenLogprob]:
        """The answer's tokens. The last step's token was never evaluated: it is the rest of the text (an
        answer cut at max_tokens) or the end-of-turn token (not part of the answer)."""
        if self.pending is not None and finish == "length":
            rest = text[sum(len(t.token) for t in self.tokens):]
            ids = llama.tokenize(rest.encode(), add_bos=False, special=False) if rest else []
            if len(ids) == 1:
                self.close(ids[0])
        return self.answer(text)


class LlamaCppModel(LocalModel):
    spec: LlamaCppSpec
    backend = "llamacpp"
    library, extra = "llama_cpp", "llamacpp"
    Spec = LlamaCppSpec

    def __init__(self, name: str, spec: LlamaCppSpec):
        super().__init__(name, spec)
        self._bridge = WorkerBridge(name, llama_thread())
        self._llama: Any = None

    def where(self) -> str:
        return self.spec.path

    def gguf_path(self) -> Path:
        from ..files import resolve_path

        return resolve_path(self.spec.path)

    def load(self):
        """Load on the calling thread (the worker, in normal use); cheap once loaded."""
        if self._llama is None:
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise ModelLoadError("llama-cpp-python is not installed: pip install 'gemfuse[llamacpp]'",
                                     model=self.name) from exc
            path = self.gguf_path()
            if not path.is_file():
                raise ModelLoadError(f"GGUF file not found: {path}", model=self.name)
            threads = self.spec.threads or default_threads()
            quiet_llama_cpp()
            try:
                with quiet_stderr():
                    llama = Llama(model_path=str(path), n_ctx=self.spec.n_ctx, n_threads=threads,
                                  n_threads_batch=threads, n_gpu_layers=self.spec.n_gpu_layers,
                                  chat_format=self.spec.chat_format, verbose=False)
            except (ValueError, RuntimeError) as exc:
                raise ModelLoadError(f"llama.cpp could not load {path}: {exc}", model=self.name) from exc
            if self.spec.chat_template:
                from llama_cpp.llama_chat_format import Jinja2ChatFormatter

                token = lambda i: llama.detokenize([i], special=True).decode("utf-8", "replace")  # noqa: E731
                llama.chat_handler = Jinja2ChatFormatter(
                    self.spec.chat_template, eos_token=token(llama.token_eos()), bos_token=token(llama.token_bos()),
                    stop_token_ids=[llama.token_eos()]).to_chat_handler()
            self._llama = llama
        return self._llama

    def _produce(self, messages: Sequence[Message], options: GenerateOptions, emit, cancelled) -> None:
        llama = self.load()
        kwargs: dict[str, Any] = {"max_tokens": options.max_tokens}
        if options.temperature is not None:
            kwargs["temperature"] = options.temperature
        if options.top_p is not None:
            kwargs["top_p"] = options.top_p
        if options.seed is not None:
            kwargs["seed"] = options.seed
        if self.spec.repeat_penalty is not None:
            kwargs["repeat_penalty"] = self.spec.repeat_penalty
        if options.stop or self.spec.stop:
            kwargs["stop"] = [*options.stop, *self.spec.stop]
        if options.json_schema is not None:  # llama.cpp turns the schema into a grammar the sampler obeys
            kwargs["response_format"] = {"type": "json_object", "schema": options.json_schema}
        if options.temperature == 0 or options.seed is not None:
            # Re-using the previous prompt's evaluated prefix changes the logits slightly (other batch shapes), and
            # with them a greedy answer: a request that asks to be reproducible evaluates its whole prompt afresh.
            llama.reset()
        recorder = self._recorder(llama, options) if options.logprobs else None
        if recorder is not None:
            kwargs["logits_processor"] = [recorder]
        chunks = llama.create_chat_completion(messages=[m.to_openai() for m in messages], stream=True, **kwargs)
        finish, produced, prompt_tokens, texts = None, 0, None, []
        try:
            for chunk in chunks:
                if prompt_tokens is None:  # the prompt is evaluated, the first answer token not yet
                    prompt_tokens = int(llama.n_tokens)
                choice = chunk["choices"][0]
                text = choice.get("delta", {}).get("content")
                if text:
                    produced += 1
                    texts.append(text)
                    emit(StreamChunk(text=text))
                finish = choice.get("finish_reason") or finish
        finally:
            chunks.close()
        logprobs = recorder.finish(llama, "".join(texts), finish) if recorder is not None else None
        # llama.cpp reports no usage when streaming: each content delta is one sampled token.
        emit(StreamChunk(finish_reason=finish or "stop", usage=Usage(prompt_tokens or 0, produced), logprobs=logprobs))

    @staticmethod
    def _recorder(llama, options: GenerateOptions) -> LlamaCppLogprobs:
        return LlamaCppLogprobs(llama, options.top_logprobs or 0)

    async def aclose(self) -> None:
        await super().aclose()
        self._llama = None
