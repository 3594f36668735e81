"""Gemma 4: text, images (a variable number of soft tokens, 280 by default) and audio (one token per 40 ms, up to
30 s)."""

from . import LINEAR_TEXT, Family
from .gemma3n import CHAT_TEMPLATE as GEMMA3N_TEMPLATE

FAMILY = Family(
    name="gemma4", chat_template=GEMMA3N_TEMPLATE, image_placeholder="<image_soft_token>", audio_placeholder="<audio_soft_token>",
    image_tokens=280 + 2, audio_tokens_per_second=25.0, audio_max_seconds=30.0,
    lora_targets={"attention": ["q_proj", "k_proj", "v_proj", "o_proj"], "all-linear": LINEAR_TEXT})
