"""Gemma 4: text, images (a variable number of soft tokens, 280 by default) and audio (one token per 40 ms, up to
30 s), and function calls in its own tokens (models/gemma4_calls.py reads them)."""

from . import LINEAR_TEXT, Family
from .gemma3n import CHAT_TEMPLATE as GEMMA3N_TEMPLATE

FAMILY = Family(
    name="gemma4", chat_template=GEMMA3N_TEMPLATE, image_placeholder="<image_soft_token>", audio_placeholder="<audio_soft_token>",
    image_tokens=280 + 2, audio_tokens_per_second=25.0, audio_max_seconds=30.0,
    lora_targets={"attention": ["q_proj", "k_proj", "v_proj", "o_proj"], "all-linear": LINEAR_TEXT})

# A call is written <|tool_call>call:name{key:<|"|>text<|"|>,n:3}<tool_call|>; a tool's result between its own marks
CALL_START, CALL_END, QUOTE = "<|tool_call>", "<tool_call|>", '<|"|>'
RESULT_START, RESULT_END = "<|tool_response>", "<tool_response|>"


def takes_tools(tokenizer) -> bool:
    """A tokenizer with Gemma 4's call tokens and a chat template that renders `tools`."""
    template = getattr(tokenizer, "chat_template", None) or ""
    return CALL_START in tokenizer.get_vocab() and "tools" in (template if isinstance(template, str) else str(template))
