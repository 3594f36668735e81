"""The built-in embedding model: WordLlama (weights inside its PyPI package, MIT). GGUF models on llama.cpp and
OpenAI-compatible endpoints embed too (Model.embed).

WordLlama pools a large language model's token embeddings, distilled for sentence similarity: 256 numbers a text,
unit length, no GPU and no torch; it loads in half a second from its package, with nothing downloaded.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ..errors import BadRequestError, ModelLoadError
from ..messages import Message
from .base import Embeddings, GenerateOptions, StreamChunk
from .local import LocalModel
from .spec import LocalSpec

WORDLLAMA = "package:wordllama"  # the package's own files: weights/ and tokenizers/


class EmbeddingSpec(LocalSpec):
    backend: Literal["embedding"] = "embedding"
    path: str = Field(WORDLLAMA, description="package:wordllama, or a folder with a WordLlama safetensors file "
                                             "and its tokenizer JSON")
    dimensions: int = Field(256, ge=64, le=4096, description="numbers per text (WordLlama's leading ones)")


class EmbeddingModel(LocalModel):
    """A model that only embeds: asked to chat, it says so."""

    spec: EmbeddingSpec
    backend = "embedding"
    library, extra = "wordllama", "embed"
    Spec = EmbeddingSpec

    def __init__(self, name: str, spec: EmbeddingSpec):
        super().__init__(name, spec)
        self._model: Any = None
        self._load_lock = threading.Lock()

    def where(self) -> str:
        return self.spec.path

    async def check(self) -> tuple[bool, str]:
        try:
            weights, tokenizer = self._files()
        except ModelLoadError as exc:
            return False, str(exc).removeprefix(f"{self.name}: ")
        return weights.is_file() and tokenizer.is_file(), str(weights.parent)

    def stream(self, messages: Sequence[Message], options: GenerateOptions | None = None
               ) -> AsyncIterator[StreamChunk]:
        raise BadRequestError("an embedding model: send it to /v1/embeddings, not to chat", model=self.name)

    def _files(self) -> tuple[Path, Path]:
        if self.spec.path == WORDLLAMA:
            import importlib.util

            found = importlib.util.find_spec("wordllama")
            if found is None or not found.origin:
                raise ModelLoadError("wordllama is not installed: pip install 'gemfuse[embed]'", model=self.name)
            root = Path(found.origin).parent
            return root / "weights" / "l2_supercat_256.safetensors", root / "tokenizers" / "l2_supercat_tokenizer_config.json"
        folder = Path(self.spec.path).expanduser()
        weights, tokenizers = sorted(folder.glob("*.safetensors")), sorted(folder.glob("*tokenizer*.json"))
        if not weights or not tokenizers:
            raise ModelLoadError(f"{folder}: needs a WordLlama .safetensors file and its tokenizer JSON",
                                 model=self.name)
        return weights[0], tokenizers[0]

    def load(self):
        with self._load_lock:
            if self._model is None:
                from safetensors import safe_open
                from wordllama import WordLlama
                from wordllama.inference import WordLlamaInference

                weights, tokenizer = self._files()
                with safe_open(str(weights), framework="np") as tensors:
                    table = tensors.get_tensor(next(iter(tensors.keys())))[:, :self.spec.dimensions]
                # built from the package's files: WordLlama.load() would look for them online first
                self._model = WordLlamaInference(table, WordLlama.load_tokenizer(tokenizer), binary=False)
            return self._model

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        def run() -> Embeddings:
            model = self.load()
            vectors = model.embed(list(texts), norm=True)
            tokens = sum(len(e.ids) for e in model.tokenizer.encode_batch(list(texts)))
            return Embeddings([[float(x) for x in row] for row in vectors], tokens)

        return await self._bridge.call(run)
