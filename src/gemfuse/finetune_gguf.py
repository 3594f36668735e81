"""A fine-tune run on llama.cpp, the runtime's side of a run folder: on a CPU, llama.cpp decodes a small Gemma
several times faster than transformers, so an evaluated or served run folder may run as its adapter merged into
its base's 16-bit GGUF, beside that base (same runtime, same precision: a fair comparison).

The base is converted once by llama.cpp's converter, cached by its folder's identity. The fine-tune is that file
with each LoRA-trained weight W replaced by W + scale * B @ A in place (about 2 s for the built-in 270M, where
merging in transformers and converting again took 20); an adapter of another kind (DoRA, saved modules, a weight
the file holds quantised) or of an architecture whose converter reorders weights is merged by the export's own
merge and converted. Either is cached by the hash of its
adapter, and kept only once its next-token predictions on a fixed text agree with the adapter's on transformers:
a grafted file that disagrees is made again the long way, a merged one that disagrees is refused, never served.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

from .errors import ModelLoadError
from .files import adapter_folder, adapter_sha256
from .gguf_layout import read_layout
from .gguf_tools import convert_to_gguf, open_gguf
from .paths import cache_dir, made_once
from .shapes import read_manifest

AGREEMENT = 0.9  # share of positions where both runtimes predict the same next token
PROBE = ("The quick brown fox jumps over the lazy dog. Paris is the capital of France, and the Seine runs "
         "through it. Two plus two is four; seven times six is forty-two.")


def folder() -> Path:
    return cache_dir() / "finetunes-gguf"


def adapter_hash(run: Path) -> str:
    """The merged file's key: the trained weights, their LoRA config and the base they were trained from."""
    digest = hashlib.sha256(str(adapter_sha256(run)).encode())
    digest.update((run / "adapter" / "adapter_config.json").read_bytes())
    digest.update(json.dumps(read_manifest(run).get("base_model")).encode())
    return digest.hexdigest()[:16]


def merged_gguf(run_path: str) -> Path:
    """The run folder's fine-tune as a 16-bit GGUF, made (and checked) once."""
    run = Path(run_path).expanduser().resolve()
    target = folder() / f"{run.name}-{adapter_hash(run)}.gguf"
    if target.is_file():
        return target
    with made_once(target):
        return target if target.is_file() else _make_merged(run, run_path, target)


def _make_merged(run: Path, run_path: str, target: Path) -> Path:
    from .tune.export import merge

    base = base_gguf(run_path)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".merging-") as work:
        staging = Path(work) / target.name  # published whole, by a rename
        if graft_adapter(base, run, staging) and next_token_agreement(staging, run) >= AGREEMENT:
            os.replace(staging, target)
            return target
        convert_to_gguf(merge(run, read_manifest(run), Path(work) / "merged"), staging)
        agreement = next_token_agreement(staging, run)
        if agreement < AGREEMENT:  # the staging file goes with the temporary folder
            raise ModelLoadError(f"{run}: the merged GGUF predicts the adapter's next token at only "
                                 f"{agreement:.0%} of positions; run it on transformers instead "
                                 "(finetune_runtime = \"transformers\" in the config)")
        os.replace(staging, target)
    return target


# Adapter settings the graft does not fold (any of them set: merge and convert instead).
UNFOLDED = ("use_dora", "modules_to_save", "rank_pattern", "alpha_pattern", "fan_in_fan_out", "lora_bias",
            "trainable_token_indices", "layer_replication", "target_parameters", "use_qalora")
# Architectures whose converter writes the projections as transformers holds them (llama's, for one, permutes
# q and k, so a delta added in transformers' order would land on the wrong rows).
GRAFTED_ARCHITECTURES = {"gemma3"}
ADAPTER_PREFIX = "base_model.model."
LORA_A, LORA_B = ".lora_A.weight", ".lora_B.weight"


def graft_adapter(base: Path, run: Path, out: Path) -> bool:
    """Write `out`: the base's GGUF with each weight the run's LoRA adapter trained replaced by W + scale * B @ A,
    in the weight's own type and place. False, and nothing written, where the adapter or the file is of a kind this
    does not fold (UNFOLDED, GRAFTED_ARCHITECTURES; a module the file does not name, or holds quantised)."""
    import gguf
    import numpy as np
    import torch
    from safetensors.torch import load_file

    adapter = adapter_folder(run)
    config = json.loads((adapter / "adapter_config.json").read_text())
    if config.get("peft_type") != "LORA" or any(config.get(key) for key in UNFOLDED):
        return False
    scale = config["lora_alpha"] / (math.sqrt(config["r"]) if config.get("use_rslora") else config["r"])
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    modules = {key.removesuffix(LORA_A) for key in weights if key.endswith(LORA_A)}
    if set(weights) != {m + LORA_A for m in modules} | {m + LORA_B for m in modules}:
        return False  # embedding LoRA, saved modules: not plain A/B pairs
    layout = read_layout(base)
    architecture = layout.metadata.get("general.architecture")
    known = {name: arch for arch, name in gguf.MODEL_ARCH_NAMES.items()}
    if architecture not in GRAFTED_ARCHITECTURES or architecture not in known:
        return False
    names = gguf.get_tensor_name_map(known[architecture], int(layout.metadata.get(f"{architecture}.block_count", 0)))
    places = {}
    for module in modules:
        name = names.get_name(module.removeprefix(ADAPTER_PREFIX) + ".weight", try_suffixes=(".weight",))
        place = layout.tensors.get(name or "")
        delta_shape = (weights[module + LORA_B].shape[0], weights[module + LORA_A].shape[1])
        if place is None or place.dtype is None or place.shape != delta_shape:
            return False
        places[module] = place
    shutil.copyfile(base, out)
    with open(out, "r+b") as handle:
        for module, place in places.items():
            held = "uint16" if place.dtype == "bfloat16" else str(place.dtype)  # numpy has no bfloat16
            stored = np.memmap(handle, dtype=held, mode="r+", offset=place.offset, shape=place.shape)
            weight = torch.from_numpy(stored)
            if place.dtype == "bfloat16":
                weight = weight.view(torch.bfloat16)
            delta = weights[module + LORA_B].float() @ weights[module + LORA_A].float()
            weight.copy_(weight.float() + scale * delta)
            stored.flush()
    return True


def base_gguf(run_path: str) -> Path:
    """The run's base model as a 16-bit GGUF, made once per base folder."""
    from .tune.base import resolve_base

    base = resolve_base(read_manifest(Path(run_path).expanduser())["base_model"])
    config = base.folder / "config.json"
    stat = config.stat()
    key = hashlib.sha256(f"{base.folder.resolve()}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = folder() / f"base-{base.folder.name}-{key}.gguf"
    if not target.is_file():
        with made_once(target):
            if not target.is_file():
                with tempfile.TemporaryDirectory(dir=target.parent, prefix=".converting-") as work:
                    convert_to_gguf(base.folder, Path(work) / target.name)
                    os.replace(Path(work) / target.name, target)
    return target


def next_token_agreement(gguf: Path, run: Path) -> float:
    """Share of positions of a fixed text where llama.cpp on `gguf` and transformers with the run's adapter
    predict the same next token."""
    import numpy as np
    import torch

    from ._torchvision import MODEL_LOADING, import_transformers
    from .tune.base import resolve_base

    transformers = import_transformers()  # before peft, which imports transformers
    from peft import PeftModel

    base = resolve_base(read_manifest(run)["base_model"])
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(run / "adapter"))
    ids = tokenizer(PROBE, return_tensors="pt")["input_ids"]
    with MODEL_LOADING:
        model = transformers.AutoModelForCausalLM.from_pretrained(str(base.folder), dtype=torch.float32)
        model = PeftModel.from_pretrained(model, str(run / "adapter")).eval()
    with torch.inference_mode():
        expected = model(ids).logits[0].argmax(-1).numpy()
    del model
    llm = open_gguf(gguf, n_ctx=max(64, ids.shape[1] + 8), logits_all=True)
    llm.eval(ids[0].tolist())
    got = np.asarray(llm.scores[: ids.shape[1]]).argmax(-1)
    del llm
    return float((got == expected).mean())
