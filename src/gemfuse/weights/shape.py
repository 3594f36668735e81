"""A model's shape without its weights: sizes from its config (a folder, a hub id's config.json, or a GGUF's
metadata) and, where they can be read, exact parameter counts from the safetensors headers or GGUF tensor table.

Only what memory planning needs: parameters (and how many sit in embeddings, which most int8 / 4-bit loaders
keep at 16 bits), and, per decoder layer that keeps its own KV cache, its KV heads, head size and window.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError

SLIDING = "sliding_attention"


@dataclass
class LayerCache:
    kv_heads: int
    head_dim: int
    window: int | None  # tokens kept by a sliding-window layer; None: the whole context


@dataclass
class ModelShape:
    name: str
    source: str  # "folder" | "hub" | "gguf" | "config"
    model_type: str
    hidden: int
    intermediate: int
    layers: int
    vocab: int
    params: int
    embedding_params: int
    caches: list[LayerCache]
    max_context: int
    exact: bool = False  # params counted from tensor headers, not estimated from the config
    file_bytes: int | None = None  # the GGUF file as it is (its own quantisation)
    file_type: str | None = None
    notes: list[str] = field(default_factory=list)

    def kv_bytes(self, context: int, width: float = 2.0, full_windows: bool = False) -> float:
        """Keys and values for `context` tokens; `full_windows`: sliding layers keep the whole context too
        (llama.cpp's default full-size SWA cache)."""
        total = 0.0
        for layer in self.caches:
            tokens = context if layer.window is None or full_windows else min(context, layer.window)
            total += 2 * layer.kv_heads * layer.head_dim * tokens * width
        return total


# -- from a config -------------------------------------------------------------------------------------------------
def text_config(config: dict) -> dict:
    return config.get("text_config") or config


def layer_caches(text: dict) -> list[LayerCache]:
    layers = int(text["num_hidden_layers"])
    heads = int(text.get("num_attention_heads") or 1)
    head_dim = int(text.get("head_dim") or text["hidden_size"] // heads)
    kv_heads = int(text.get("num_key_value_heads") or heads)
    window = text.get("sliding_window")
    types = text.get("layer_types")
    if not types:
        pattern = text.get("sliding_window_pattern") or (6 if window and "gemma3" in str(text.get("model_type")) else 0)
        types = [SLIDING if pattern and (i + 1) % pattern else "full_attention" for i in range(layers)]
    # Gemma 4's full-attention layers have their own head size and (with shared K/V) their own head count.
    global_dim = int(text.get("global_head_dim") or head_dim)
    global_kv = int(text.get("num_global_key_value_heads") or kv_heads)
    shared = int(text.get("num_kv_shared_layers") or 0)  # the last N layers reuse earlier layers' caches
    caches = []
    for kind in types[: layers - shared]:
        if kind == SLIDING and window:
            caches.append(LayerCache(kv_heads, head_dim, int(window)))
        else:
            caches.append(LayerCache(global_kv, global_dim, None))
    return caches


def tower_params(tower: dict | None, text_hidden: int) -> int:
    """A ViT / conformer-like tower: layers x (attention 4h^2 + MLP 2hi), patch embedding, and a projector."""
    if not tower or not tower.get("hidden_size") or not tower.get("num_hidden_layers"):
        return 0
    hidden, layers = int(tower["hidden_size"]), int(tower["num_hidden_layers"])
    inter = int(tower.get("intermediate_size") or 4 * hidden)
    patch = int(tower.get("patch_size") or 0)
    image = int(tower.get("image_size") or 0)
    embed = 3 * patch * patch * hidden + ((image // patch) ** 2 * hidden if patch and image else 0)
    return layers * (4 * hidden * hidden + 2 * hidden * inter) + embed + hidden * text_hidden


def from_config(config: dict, name: str, source: str = "config") -> ModelShape:
    text = text_config(config)
    try:
        hidden, layers, vocab = int(text["hidden_size"]), int(text["num_hidden_layers"]), int(text["vocab_size"])
    except KeyError as exc:
        raise ConfigError(f"{name}: its config has no {exc.args[0]}; is it a decoder language model?") from None
    heads = int(text.get("num_attention_heads") or 1)
    head_dim = int(text.get("head_dim") or hidden // heads)
    kv_heads = int(text.get("num_key_value_heads") or heads)
    inter = text.get("intermediate_size") or 4 * hidden
    inters = [int(i) for i in inter] if isinstance(inter, list) else [int(inter)] * layers
    caches = layer_caches(text)
    attention = 0
    for index in range(layers):
        full = index < len(caches) and caches[index].window is None
        dim = int(text.get("global_head_dim") or head_dim) if full else head_dim
        kv = int(text.get("num_global_key_value_heads") or kv_heads) if full else kv_heads
        shares_kv = full and text.get("attention_k_eq_v")
        attention += 2 * hidden * heads * dim + (1 if shares_kv else 2) * hidden * kv * dim
    mlp = sum(3 * hidden * i for i in inters)
    if text.get("enable_moe_block") and text.get("num_experts"):
        experts, expert_inter = int(text["num_experts"]), int(text.get("moe_intermediate_size") or inters[0])
        mlp += layers * (experts * 3 * hidden * expert_inter + hidden * experts)
    tied = config.get("tie_word_embeddings", text.get("tie_word_embeddings", True))
    embedding = vocab * hidden * (1 if tied else 2)
    per_layer = int(text.get("hidden_size_per_layer_input") or 0)
    if per_layer:  # Gemma 3n / 4 per-layer embeddings: one wide table beside the token embedding
        embedding += int(text.get("vocab_size_per_layer_input") or vocab) * layers * per_layer
        attention += layers * (2 * hidden * per_layer) + hidden * layers * per_layer
    towers = tower_params(config.get("vision_config"), hidden) + tower_params(config.get("audio_config"), hidden)
    context = int(text.get("max_position_embeddings") or config.get("max_position_embeddings") or 8192)
    model_type = str(config.get("model_type") or text.get("model_type") or "unknown")
    shape = ModelShape(name, source, model_type, hidden, max(inters), layers, vocab,
                       params=embedding + attention + mlp + towers, embedding_params=embedding, caches=caches,
                       max_context=context)
    if (config.get("vision_config") or config.get("audio_config")) and not towers:
        shape.notes.append("a vision or audio tower is declared but its size is not in the config: not counted")
    return shape


# -- exact counts from tensor headers ------------------------------------------------------------------------------
def is_embedding(name: str) -> bool:
    return "embed_tokens" in name or name.endswith(("lm_head.weight", "token_embd.weight", "per_layer_token_embd.weight"))


def count_tensors(tensors: dict[str, list[int]]) -> tuple[int, int]:
    params = embedding = 0
    for tensor, tensor_shape in tensors.items():
        count = 1
        for size in tensor_shape:
            count *= int(size)
        params += count
        embedding += count if is_embedding(tensor) else 0
    return params, embedding


def safetensors_shapes(folder: Path) -> dict[str, list[int]]:
    """Each tensor's shape from the safetensors headers (8-byte length, then JSON): no weights read."""
    shapes: dict[str, list[int]] = {}
    for file in sorted(folder.glob("*.safetensors")):
        with open(file, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        shapes.update({k: v["shape"] for k, v in header.items() if k != "__metadata__"})
    return shapes


def with_exact_counts(shape: ModelShape, tensors: dict[str, list[int]]) -> ModelShape:
    if tensors:
        shape.params, shape.embedding_params = count_tensors(tensors)
        shape.exact = True
        shape.notes = [n for n in shape.notes if "tower" not in n]
    return shape


# -- from a GGUF's metadata ----------------------------------------------------------------------------------------
def from_gguf(path: Path) -> ModelShape:
    from gguf import GGUFReader
    from gguf.constants import LlamaFileType

    try:
        reader = GGUFReader(str(path))
    except (ValueError, OSError) as exc:
        raise ConfigError(f"{path}: not a readable GGUF file: {exc}") from None

    def value(key: str, default=None):
        found = reader.fields.get(key)
        return found.contents() if found is not None else default

    arch = value("general.architecture", "llama")
    hidden = int(value(f"{arch}.embedding_length"))
    layers = int(value(f"{arch}.block_count"))
    heads = int(value(f"{arch}.attention.head_count", 1))
    kv = value(f"{arch}.attention.head_count_kv", heads)
    inter = value(f"{arch}.feed_forward_length", 4 * hidden)
    config = {
        "model_type": arch, "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": max(kv) if isinstance(kv, list) else int(kv),
        "head_dim": int(value(f"{arch}.attention.key_length", hidden // heads)),
        "intermediate_size": inter, "sliding_window": value(f"{arch}.attention.sliding_window"),
        "num_kv_shared_layers": value(f"{arch}.attention.shared_kv_layers", 0),
        "max_position_embeddings": value(f"{arch}.context_length", 4096),
    }
    tensors = {t.name: [int(n) for n in t.shape] for t in reader.tensors}
    embedding = tensors.get("token_embd.weight", [hidden, 0])
    config["vocab_size"] = int(value(f"{arch}.vocab_size", max(embedding)))
    shape = with_exact_counts(from_config(config, path.name, "gguf"), tensors)
    shape.file_bytes = path.stat().st_size
    file_type = value("general.file_type")
    try:
        shape.file_type = LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_") if file_type is not None else None
    except ValueError:
        shape.file_type = str(file_type)
    return shape


# -- any source ----------------------------------------------------------------------------------------------------
def read_shape(model: str, *, revision: str | None = None) -> ModelShape:
    """`model`: a GGUF file, a model folder, a configured model name, or a hub id (its config.json only)."""
    path = Path(model).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return from_gguf(path)
    if path.is_file() and path.suffix == ".json":  # a config.json on its own
        named = path.parent.name if path.stem == "config" else path.stem
        return from_config(json.loads(path.read_text()), named, "config")
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if not (path / "config.json").is_file():
            if ggufs:
                return from_gguf(ggufs[0])
            raise ConfigError(f"{path}: no config.json and no .gguf file; is it a model folder?")
        shape = from_config(json.loads((path / "config.json").read_text()), path.name, "folder")
        return with_exact_counts(shape, safetensors_shapes(path))
    configured = configured_path(model)
    if configured is not None:
        return read_shape(str(configured))
    if model.count("/") == 1 and not model.startswith((".", "/", "~")):
        return from_hub(model, revision)
    raise ConfigError(f"{model}: not a GGUF file, a model folder, a configured model or a hub id (owner/name)")


def configured_path(name: str) -> Path | None:
    """The weights of a model named in the config (built-in `package:` paths resolved), if it has local ones."""
    from ..config import load_config

    spec = load_config().specs.get(name)
    path = getattr(spec, "path", None)
    if not path:
        return None
    from ..files import resolve_path

    resolved = resolve_path(path)
    gguf = getattr(spec, "gguf_file", None)
    return resolved / gguf if gguf else resolved


def from_hub(repo: str, revision: str | None) -> ModelShape:
    """The config.json alone, and the safetensors headers (a few KB each, read by range requests)."""
    from huggingface_hub import HfApi, hf_hub_download

    from .pull import hub_error

    try:
        config = json.loads(Path(hf_hub_download(repo, "config.json", revision=revision)).read_text())
    except Exception as exc:  # noqa: BLE001 - turned into one clear message
        raise hub_error(repo, exc) from None
    shape = from_config(config, repo, "hub")
    try:
        metadata = HfApi().get_safetensors_metadata(repo, revision=revision)
        tensors = {name: info.shape for file in metadata.files_metadata.values()
                   for name, info in file.tensors.items()}
        return with_exact_counts(shape, tensors)
    except Exception:  # noqa: BLE001 - headers are a refinement; the config's estimate stands
        shape.notes.append("parameters estimated from the config (safetensors headers unavailable)")
        return shape
