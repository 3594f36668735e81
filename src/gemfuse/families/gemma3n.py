"""Gemma 3n: text, images (MobileNetV5, 256 soft tokens) and audio (188 soft tokens for up to 30 s)."""

from . import LINEAR_TEXT, Family
from .gemma3 import CHAT_TEMPLATE as GEMMA3_TEMPLATE

CHAT_TEMPLATE = GEMMA3_TEMPLATE.replace(
    "{%- if item['type'] == 'image' -%}{{ '<start_of_image>' }}",
    "{%- if item['type'] == 'image' -%}{{ '<image_soft_token>' }}"
    "{%- elif item['type'] == 'audio' -%}{{ '<audio_soft_token>' }}")

FAMILY = Family(
    name="gemma3n", chat_template=CHAT_TEMPLATE, image_placeholder="<image_soft_token>", audio_placeholder="<audio_soft_token>",
    image_tokens=256 + 4, audio_tokens_per_second=188 / 30, audio_max_seconds=30.0,
    lora_targets={"attention": ["q_proj", "k_proj", "v_proj", "o_proj"], "all-linear": LINEAR_TEXT},
    keep_full_precision=("prediction_coefs", "correction_coefs"))  # AltUp clamps their weights in place
