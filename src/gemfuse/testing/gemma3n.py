"""A tiny random-weight Gemma 3n (text + image + audio).

The timm MobileNetV5 tower keeps its fixed 2048-wide output but is shrunk with a channel multiplier; image and
audio soft tokens sit above the text vocab at the configured `vocab_offset`s, as in the real model.
"""

from __future__ import annotations

from pathlib import Path

from .tokenizer import (
    AUDIO_BLOCK,
    IDS,
    IMAGE_BLOCK,
    MEDIA_BLOCK,
    TEXT_VOCAB,
    build_tokenizer,
    chat_template,
    save,
    text_config,
)

IMAGE_SIZE = 64
VISION_TOKENS = 16  # msfa_output_resolution 4 -> a 4 x 4 grid
AUDIO_TOKENS = 16  # about 2.5 s of audio at 160 ms a token
MEL_BINS = 32


def build(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import (
        Gemma3nAudioFeatureExtractor,
        Gemma3nConfig,
        Gemma3nForConditionalGeneration,
        Gemma3nProcessor,
        SiglipImageProcessorPil,
    )

    torch.manual_seed(seed)
    config = Gemma3nConfig(
        text_config=text_config(vocab_size_per_layer_input=TEXT_VOCAB, hidden_size_per_layer_input=16, laurel_rank=8,
                                num_kv_shared_layers=0, activation_sparsity_pattern=[0.0, 0.0],
                                layer_types=["sliding_attention", "full_attention"]),
        vision_config=dict(vocab_size=MEDIA_BLOCK, vocab_offset=IMAGE_BLOCK,
                           model_args={"channel_multiplier": 0.0625, "msfa_output_resolution": 4}),
        audio_config=dict(vocab_size=MEDIA_BLOCK, vocab_offset=AUDIO_BLOCK, input_feat_size=MEL_BINS, hidden_size=32,
                          conf_num_attention_heads=2, conf_num_hidden_layers=1, sscp_conv_channel_size=(16, 8)),
        audio_soft_tokens_per_image=AUDIO_TOKENS, vision_soft_tokens_per_image=VISION_TOKENS,
        boi_token_id=IDS["boi"], eoi_token_id=IDS["eoi"], image_token_id=IDS["image"],
        boa_token_id=IDS["boa"], eoa_token_id=IDS["eoa"], audio_token_id=IDS["audio"])
    model = Gemma3nForConditionalGeneration(config)
    processor = Gemma3nProcessor(
        feature_extractor=Gemma3nAudioFeatureExtractor(feature_size=MEL_BINS),
        image_processor=SiglipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}),
        tokenizer=build_tokenizer(), chat_template=chat_template("<image_soft_token>", "<audio_soft_token>"),
        audio_seq_length=AUDIO_TOKENS, image_seq_length=VISION_TOKENS)
    return save(model, processor, folder)
