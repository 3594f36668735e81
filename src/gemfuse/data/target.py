"""What a dataset is checked and collated against: a model folder (its processor and family), or a family name
(`gemma3`, `gemma3n`, `gemma4`) with the real Gemma tokenizer from the built-in Gemma 3 270M GGUF."""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from ..errors import SettingError
from ..families import KNOWN, Family, family
from ..paths import cache_dir, published_folder


@dataclass
class Target:
    family: Family
    processor: Any  # a processor for multimodal models, else the tokenizer; None once released
    source: str
    saved: dict[str, bytes] = field(default_factory=dict, repr=False)  # its files, kept by `release`

    @cached_property
    def tokenizer(self):
        return getattr(self.processor, "tokenizer", self.processor)

    @cached_property
    def chat_template(self) -> str:
        return (getattr(self.processor, "chat_template", None) or self.tokenizer.chat_template
                or self.family.chat_template)

    def save(self, folder: Path) -> None:
        """Write the processor beside trained weights, with the chat template it was trained on."""
        if self.processor is None:
            for name, data in self.saved.items():
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                (folder / name).write_bytes(data)
            return
        if not self.tokenizer.chat_template:  # trained on the family's template: keep it with the weights
            self.tokenizer.chat_template = self.chat_template
        self.processor.save_pretrained(folder)

    def release(self) -> None:
        """Forget the processor once nothing will tokenise (Gemma's 262k-piece tokenizer holds ~0.25 GiB, its
        files 33 MB); the chat template, turn markers and the files `save` writes stay."""
        _ = self.chat_template, self.markers, self.takes_tools
        with tempfile.TemporaryDirectory() as tmp:
            self.save(Path(tmp))
            self.saved = {str(f.relative_to(tmp)): f.read_bytes() for f in Path(tmp).rglob("*") if f.is_file()}
        self.processor = None
        self.__dict__.pop("tokenizer", None)

    def render(self, conversation: list[dict], add_generation_prompt: bool = False,
               tools: list[dict] | None = None) -> str:
        given = {"tools": tools} if tools else {}
        return self.tokenizer.apply_chat_template(conversation, tokenize=False, chat_template=self.chat_template,
                                                  add_generation_prompt=add_generation_prompt, **given)

    @cached_property
    def takes_tools(self) -> bool:
        """Its own template renders tools (Gemma 4): rows with tools are trained as that template writes them,
        which is how the served model reads them."""
        from ..families.gemma4 import takes_tools

        return self.processor is not None and takes_tools(self.tokenizer)

    @cached_property
    def markers(self) -> tuple[str, str]:
        """(response prefix, end-of-turn text), read off the chat template itself."""
        user = [{"role": "user", "content": "PROBEUSER"}]
        prompt = self.render(user, add_generation_prompt=True)
        prefix = prompt[len(self.render(user)):]
        full = self.render([*user, {"role": "assistant", "content": "PROBEANSWER"}])
        end = full[full.index("PROBEANSWER") + len("PROBEANSWER"):]
        return prefix, end.rstrip("\n") or end

    @cached_property
    def image_cost(self) -> int:
        """Tokens one image adds in place of its placeholder (one token)."""
        sequence = getattr(self.processor, "full_image_sequence", None)
        if sequence:
            return len(self.tokenizer(sequence, add_special_tokens=False).input_ids)
        soft = getattr(getattr(self.processor, "image_processor", None), "max_soft_tokens", None)
        return soft + 2 if soft else self.family.image_tokens

    def audio_cost(self, seconds: float) -> int:
        sequence = getattr(self.processor, "full_audio_sequence", None)
        if sequence:
            return len(self.tokenizer(sequence, add_special_tokens=False).input_ids)
        ms_per_token = getattr(self.processor, "audio_ms_per_token", None)
        if ms_per_token:
            cap = getattr(self.processor, "audio_seq_length", 750)
            return min(cap, math.ceil(seconds * 1000 / ms_per_token)) + 2
        return math.ceil(seconds * self.family.audio_tokens_per_second) + 2

    @property
    def sampling_rate(self) -> int:
        extractor = getattr(self.processor, "feature_extractor", None)
        return getattr(extractor, "sampling_rate", None) or self.family.sampling_rate

    @property
    def takes_images(self) -> bool:
        return hasattr(self.processor, "image_processor") or (self.processor is self.tokenizer
                                                              and self.family.image_placeholder is not None)

    @property
    def takes_audio(self) -> bool:
        return hasattr(self.processor, "feature_extractor") or (self.processor is self.tokenizer
                                                                and self.family.takes_audio)


def gemma_tokenizer():
    """The real Gemma tokenizer (262k pieces), read once from the built-in GGUF and cached as a folder."""
    from .._torchvision import import_transformers

    transformers = import_transformers()
    folder = cache_dir() / "gemma-tokenizer"
    if not (folder / "tokenizer_config.json").is_file():
        from ..files import GEMMA3_270M, resolve_path

        gguf = resolve_path(GEMMA3_270M)
        with published_folder(folder, replace=False) as staging:
            transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(staging)
    return transformers.AutoTokenizer.from_pretrained(str(folder))


def load_target(model: str) -> Target:
    """`model` is a family name or a model folder (config.json + tokenizer or processor)."""
    if model in KNOWN:
        return Target(family(model), gemma_tokenizer(), f"{model} (Gemma tokenizer)")
    path = Path(model).expanduser()
    config_file = path / "config.json"
    if not config_file.is_file():
        raise SettingError("model", model, f"not a family ({', '.join(KNOWN)}) nor a model folder with config.json")
    config = json.loads(config_file.read_text())
    fam = family(config.get("model_type", ""))
    from ..processors import load_processor, modalities_of

    return Target(fam, load_processor(str(path), modalities_of(config)), str(path))
