"""A tiny random-weight Gemma 3 (text + image): text hidden 64, 2 layers; SigLIP 32 px images, 4 soft tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .tokenizer import IDS, build_tokenizer, chat_template, save, text_config

IMAGE_SIZE = 32
MM_TOKENS_PER_IMAGE = 4


def build(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessorPil, Gemma3Processor

    torch.manual_seed(seed)
    token_ids: dict[str, Any] = dict(pad_token_id=IDS["pad"], bos_token_id=IDS["bos"], eos_token_id=IDS["eos"])
    config = Gemma3Config(
        text_config=text_config(),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=IMAGE_SIZE, patch_size=8),
        mm_tokens_per_image=MM_TOKENS_PER_IMAGE, image_token_index=IDS["image"], boi_token_index=IDS["boi"],
        eoi_token_index=IDS["eoi"], **token_ids)
    model = Gemma3ForConditionalGeneration(config)
    tokenizer = build_tokenizer()
    image_processor = Gemma3ImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor = Gemma3Processor(image_processor=image_processor, tokenizer=tokenizer,
                                chat_template=chat_template("<start_of_image>", ""),
                                image_seq_length=MM_TOKENS_PER_IMAGE)
    return save(model, processor, folder)
