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


# A stand-in for Gemma 4's own template where tools are concerned: declarations in a system turn, calls in its call
# tokens, a result in a user turn (the tiny tokenizer has three spare tokens made its call marks).
TOOL_TEMPLATE = (
    "{{ bos_token }}{% if tools %}<start_of_turn>system\n{% for t in tools %}<|tool>declaration:"
    "{{ t['function']['name'] }}{{ t['function']['parameters'] | tojson }}<tool|>{% endfor %}<end_of_turn>\n"
    "{% endif %}{% for m in messages %}{% if m['role'] == 'tool' %}<start_of_turn>user\n<|tool_response>response:"
    "{{ m['name'] }}{value:<|\"|>{{ m['content'] }}<|\"|>}<tool_response|><end_of_turn>\n"
    "{% elif m['role'] == 'assistant' and m.get('tool_calls') %}<start_of_turn>model\n{% for c in m['tool_calls'] %}"
    "<|tool_call>call:{{ c['function']['name'] }}{{ c['function']['arguments'] | tojson }}<tool_call|>{% endfor %}"
    "<end_of_turn>\n{% else %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n"
    "{{ m['content'] if m['content'] is string else m['content'] | map(attribute='text') | join('') }}<end_of_turn>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")


def with_tool_template(source: Path, folder: Path) -> Path:
    """A copy of the tiny Gemma 4 at `source` whose tokenizer has Gemma 4's call marks and whose chat template
    takes tools (TOOL_TEMPLATE), as a real Gemma 4 checkpoint has."""
    import json
    import shutil

    shutil.copytree(source, folder)
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    for spare, mark in (("<unused509>", "<|tool_call>"), ("<unused510>", "<tool_call|>"), ("<unused511>", '<|"|>')):
        ident = tokenizer["model"]["vocab"].pop(spare)
        tokenizer["model"]["vocab"][mark] = ident
        tokenizer["added_tokens"].append({"id": ident, "content": mark, "single_word": False, "lstrip": False,
                                          "rstrip": False, "normalized": False, "special": True})
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    (folder / "chat_template.jinja").write_text(TOOL_TEMPLATE)
    return folder
