"""GGUF models in-process on llama.cpp's own server engine (xllamacpp): continuous batching over parallel slots.

Each model is one llama.cpp server context with `concurrency` slots: requests join and leave the decoding batch
token by token, a slot keeps its prompt's evaluated prefix for the next request that shares it (the prompt
cache; not for a greedy or seeded request, which is reproduced exactly), and the GGUF's chat template (or the
spec's) renders the turns. A request occupies one Python thread while it runs (the engine's call blocks);
the model's executor has one thread per slot, so calls past the slots wait in its FIFO queue and one whose
consumer left before it started never reaches the engine. A consumer that leaves mid-answer frees its slot at
the next token.

Log-probabilities: the engine returns the chosen token's log-probability (exact, from the full distribution)
and its 20 likeliest alternatives; the certainty measures are read from those (DeepConf's confidence exactly,
self-certainty as a lower bound) and marked approximate (models/certainty.py).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from ..devices import cpu_threads
from ..errors import BadRequestError, ModelLoadError, UpstreamError
from ..messages import Message
from .base import Embeddings, GenerateOptions, StreamChunk, TokenLogprob, Usage
from .certainty import TOP_K, from_alternatives
from .grammar import engine_grammar
from .local import Cancelled, LocalModel
from .logprobs import answer_tokens
from .spec import LOCAL_SLOTS, LocalSpec

# llama-cpp-python's chat defaults, which this backend used before it ran on the server engine (whose own
# defaults are 0.8 / 40 / 0.95 / 0.05): a request that names none samples as it always did.
DEFAULT_SAMPLING = {"temperature": 0.2, "top_k": 40, "top_p": 0.95, "min_p": 0.05}
PROMPT_CACHE_MIB = 256  # host memory for prompts evicted from slots (llama.cpp's default is 8 GiB)


class LlamaCppSpec(LocalSpec):
    ENGINE: ClassVar[str] = "llama.cpp server (xllamacpp)"  # in cached answers' keys: llama-cpp-python's differ
    backend: Literal["llamacpp"] = "llamacpp"
    path: str = Field(description="a .gguf file, or package:MODULE[/FILE] for a GGUF shipped in a Python package")
    n_ctx: int = Field(4096, ge=128, description="context window in tokens, per slot")
    threads: int | None = Field(None, ge=1, description="CPU threads (default: OMP_NUM_THREADS, else all cores)")
    n_gpu_layers: int = Field(0, description="layers to offload to a GPU build of llama.cpp (-1: all)")
    repeat_penalty: float | None = Field(None, gt=0, description="penalise repeats (1.0: off; llama.cpp's default)")
    chat_format: str | None = Field(None, description="one of llama.cpp's built-in chat templates by name "
                                                      "(e.g. chatml), replacing the GGUF's own")
    lora: str | None = Field(None, description="a LoRA adapter in GGUF form, applied to every request")
    mmproj: str | None = Field(None, description="the multimodal projector GGUF of a vision model (e.g. Gemma 3): "
                                                 "the model then takes images")


def engine_params(spec: LlamaCppSpec, path: Path):
    """The engine's settings for a spec: `concurrency` slots of `n_ctx` tokens each, quiet, the GGUF's template
    or the spec's, and the adapter and projector files."""
    import xllamacpp

    slots = spec.concurrency or LOCAL_SLOTS
    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.n_parallel = slots
    params.n_ctx = spec.n_ctx * slots  # each slot gets its own n_ctx
    params.n_gpu_layers = spec.n_gpu_layers
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = spec.threads or cpu_threads()
    params.cache_ram_mib = PROMPT_CACHE_MIB
    params.verbosity = -1
    params.use_jinja = True
    if spec.chat_template or spec.chat_format:
        params.chat_template = spec.chat_template or spec.chat_format
    if spec.lora:
        adapter = xllamacpp.CommonAdapterLoraInfo()
        adapter.path, adapter.scale = str(Path(spec.lora).expanduser()), 1.0
        params.lora_adapters = [adapter]
    if spec.mmproj:
        params.mmproj.path = str(Path(spec.mmproj).expanduser())
    return params


def request_body(messages: Sequence[Message], options: GenerateOptions, spec: LlamaCppSpec) -> dict[str, Any]:
    """The engine's chat request (OpenAI's fields plus llama.cpp's own) for our messages and options."""
    body: dict[str, Any] = {"messages": [m.to_openai() for m in messages], "max_tokens": options.max_tokens,
                            "stream": True, "stream_options": {"include_usage": True}, **DEFAULT_SAMPLING}
    if options.temperature is not None:
        body["temperature"] = options.temperature
    if options.top_p is not None:
        body["top_p"] = options.top_p
    if options.seed is not None:
        body["seed"] = options.seed
    if options.temperature == 0 or options.seed is not None:
        # A prompt read partly from the cache gives slightly other logits (other batch shapes), and with them
        # another greedy answer: a request that asks to be reproducible evaluates its whole prompt afresh.
        body["cache_prompt"] = False
    if spec.repeat_penalty is not None:
        body["repeat_penalty"] = spec.repeat_penalty
    stops = [*options.stop, *spec.stop]
    if stops:
        body["stop"] = stops
    if options.json_schema is not None:  # the schema as a grammar the sampler obeys
        body["grammar"] = engine_grammar(options.json_schema)
    if options.logprobs:  # as many alternatives as the certainty measures read; trimmed to what was asked after
        body.update(logprobs=True, top_logprobs=TOP_K)
    return body


def token_logprob(raw: dict, top: int) -> TokenLogprob:
    """One token as the engine returns it, with its certainty figures read from the alternatives."""
    token = from_alternatives(TokenLogprob.from_openai(raw))
    token.top = token.top[:top]
    return token


class LlamaCppModel(LocalModel):
    spec: LlamaCppSpec
    backend = "llamacpp"
    library, extra = "xllamacpp", "llamacpp"
    Spec = LlamaCppSpec

    def __init__(self, name: str, spec: LlamaCppSpec):
        super().__init__(name, spec)
        self._server: Any = None
        self._embedder: Any = None  # the same GGUF in embedding mode, for /v1/embeddings
        self._load_lock = threading.Lock()
        if spec.mmproj:
            self.modalities = frozenset({"text", "image"})

    def where(self) -> str:
        return self.spec.path

    def gguf_path(self) -> Path:
        from ..files import resolve_path

        return resolve_path(self.spec.path)

    def load(self):
        """Start the engine on first use (thread-safe); cheap once started."""
        with self._load_lock:
            if self._server is None:
                self._server = self._start()
            return self._server

    def _start(self):
        try:
            import xllamacpp
        except ImportError as exc:
            raise ModelLoadError("xllamacpp is not installed: pip install 'gemfuse[llamacpp]'", model=self.name) from exc
        path = self.gguf_path()
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {path}", model=self.name)
        for label, file in (("LoRA adapter", self.spec.lora), ("projector", self.spec.mmproj)):
            if file and not Path(file).expanduser().is_file():
                raise ModelLoadError(f"{label} file not found: {file}", model=self.name)
        try:
            return xllamacpp.Server(engine_params(self.spec, path))
        except (ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"llama.cpp could not load {path}: {exc}", model=self.name) from exc

    def _produce(self, messages: Sequence[Message], options: GenerateOptions, emit, cancelled) -> None:
        if cancelled.is_set():  # the consumer left while this call waited for a slot
            raise Cancelled()
        server = self.load()
        top = options.top_logprobs or 0
        finish, usage, failure = None, None, None
        texts: list[str] = []
        tokens: list[TokenLogprob] = []

        def on_chunk(chunk: Any) -> bool:
            """Called by the engine for each chunk; True stops the generation and frees the slot."""
            nonlocal finish, usage, failure
            if cancelled.is_set():
                return True
            chunk = json.loads(chunk) if isinstance(chunk, (str, bytes)) else chunk
            if "error" in chunk:
                failure = chunk["error"]
                return True
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or ():
                text = (choice.get("delta") or {}).get("content") or ""
                if options.logprobs:
                    tokens.extend(token_logprob(t, top) for t in (choice.get("logprobs") or {}).get("content") or ())
                finish = choice.get("finish_reason") or finish
                if text:
                    texts.append(text)
                    try:
                        emit(StreamChunk(text=text))
                    except Cancelled:
                        return True
            return False

        result = server.handle_chat_completions(request_body(messages, options, self.spec), on_chunk)
        if isinstance(result, dict) and "error" in result:  # refused before streaming began
            failure = result["error"]
        if cancelled.is_set():
            raise Cancelled()
        if failure is not None:
            raise self._error(failure)
        counts = Usage(int((usage or {}).get("prompt_tokens", 0)), int((usage or {}).get("completion_tokens", 0)))
        # the tokens of the text shown (a withheld stop sequence is not part of it)
        logprobs = answer_tokens(tokens, "".join(texts)) if options.logprobs else None
        emit(StreamChunk(finish_reason=finish or "stop", usage=counts, logprobs=logprobs))

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        """Mean-pooled vectors from a second engine of the same GGUF in embedding mode, started on first use."""
        def run() -> Embeddings:
            with self._load_lock:
                if self._embedder is None:
                    import xllamacpp

                    params = engine_params(self.spec.model_copy(update={"concurrency": 1}), self.gguf_path())
                    params.embedding = True
                    params.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
                    self._embedder = xllamacpp.Server(params)
            result = self._embedder.handle_embeddings({"input": list(texts)})
            if "error" in result:
                raise self._error(result["error"])
            rows = sorted(result["data"], key=lambda row: row["index"])
            return Embeddings([row["embedding"] for row in rows], int(result.get("usage", {}).get("prompt_tokens", 0)))

        return await self._bridge.call(run)

    def _error(self, failure: Any) -> Exception:
        message = failure.get("message", str(failure)) if isinstance(failure, dict) else str(failure)
        code = failure.get("code") if isinstance(failure, dict) else None
        kind = BadRequestError if code == 400 else UpstreamError
        return kind(f"llama.cpp refused the request: {message}", model=self.name)

    async def aclose(self) -> None:
        await super().aclose()
        self._server = self._embedder = None  # the engines stop their loops and free the weights when released
