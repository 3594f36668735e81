"""A tiny random-weight Gemma 4 (text + image + audio), with the processor's video side present as it requires.

Constraints of the real code kept here: image `max_soft_tokens` is one of 70/140/280/560/1120, the first audio
subsampling channel count equals the mel feature size, and `<|video|>` is already in the vocab.
"""

from __future__ import annotations

from pathlib import Path

from .tokenizer import IDS, VOCAB_SIZE, build_tokenizer, chat_template, save, text_config

MEL_BINS = 32
IMAGE_SOFT_TOKENS = 70


def build(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import (
        Gemma4AudioFeatureExtractor,
        Gemma4Config,
        Gemma4ForConditionalGeneration,
        Gemma4ImageProcessorPil,
        Gemma4Processor,
        Gemma4VideoProcessor,
    )

    torch.manual_seed(seed)
    config = Gemma4Config(
        text_config=text_config(vocab_size_per_layer_input=VOCAB_SIZE, global_head_dim=32,
                                hidden_size_per_layer_input=16, layer_types=["sliding_attention", "full_attention"]),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           num_key_value_heads=2, head_dim=16, patch_size=16, pooling_kernel_size=3),
        audio_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                          subsampling_conv_channels=[MEL_BINS, 8], output_proj_dims=32),
        boi_token_id=IDS["boi"], eoi_token_id=IDS["eoi"], image_token_id=IDS["image"], video_token_id=IDS["video"],
        boa_token_id=IDS["boa"], eoa_token_index=IDS["eoa"], audio_token_id=IDS["audio"])
    model = Gemma4ForConditionalGeneration(config)
    processor = Gemma4Processor(
        feature_extractor=Gemma4AudioFeatureExtractor(feature_size=MEL_BINS),
        image_processor=Gemma4ImageProcessorPil(max_soft_tokens=IMAGE_SOFT_TOKENS),
        video_processor=Gemma4VideoProcessor(), tokenizer=build_tokenizer(),
        chat_template=chat_template("<image_soft_token>", "<audio_soft_token>"),
        image_seq_length=IMAGE_SOFT_TOKENS)
    return save(model, processor, folder)
