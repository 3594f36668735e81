"""An offline Gemma-style tokenizer: byte-fallback BPE trained on a few sentences, with Gemma's special tokens
at fixed ids so the tiny Gemma 3, 3n and 4 configs can point at them.

Layout (ids): specials from 0, BPE pieces after them, `<unusedN>` filler up to TEXT_VOCAB, then the image
block [TEXT_VOCAB, +MEDIA_BLOCK) and the audio block after it (Gemma 3n recognises media tokens by range).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TEXT_VOCAB = 512
MEDIA_BLOCK = 8
IMAGE_BLOCK = TEXT_VOCAB  # eoi, image soft token, unused
AUDIO_BLOCK = TEXT_VOCAB + MEDIA_BLOCK  # eoa, audio soft token, unused
VOCAB_SIZE = TEXT_VOCAB + 2 * MEDIA_BLOCK

SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>",
            "<start_of_image>", "<start_of_audio>", "<|video|>"]
IDS = {
    "pad": 0, "eos": 1, "bos": 2, "unk": 3, "start_of_turn": 5, "end_of_turn": 6, "boi": 7, "boa": 8, "video": 9,
    "eoi": IMAGE_BLOCK, "image": IMAGE_BLOCK + 1, "eoa": AUDIO_BLOCK, "audio": AUDIO_BLOCK + 1,
}
MEDIA_TOKENS = {IDS["eoi"]: "<end_of_image>", IDS["image"]: "<image_soft_token>",
                IDS["eoa"]: "<end_of_audio>", IDS["audio"]: "<audio_soft_token>"}

CORPUS = [
    "The capital of France is Paris. The capital of Italy is Rome.",
    "Describe this image. A red square on a white background.",
    "Transcribe this audio clip. Hello world, this is a test.",
    "What is two plus two? Two plus two is four.",
    "user model assistant system answer question yes no",
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,;:!?'\"()[]{}<>-_/\\|@#$%^&*+=~`",
]

# A Gemma-style chat template (system text folded into the first user turn, media placeholders in place).
CHAT_TEMPLATE = (
    "{{ bos_token }}{% set sys = namespace(text='') %}"
    "{% for m in messages %}{% if m['role'] == 'system' %}"
    "{% set sys.text = (m['content'] if m['content'] is string else m['content'] | selectattr('type', 'equalto', 'text')"
    " | map(attribute='text') | join('')) + '\\n\\n' %}"
    "{% else %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n"
    "{% if m['role'] == 'user' %}{{ sys.text }}{% set sys.text = '' %}{% endif %}"
    "{% if m['content'] is string %}{{ m['content'] | trim }}{% else %}"
    "{% for p in m['content'] %}{% if p['type'] == 'text' %}{{ p['text'] | trim }}"
    "{% elif p['type'] == 'image' %}{{ image_placeholder }}{% elif p['type'] == 'audio' %}{{ audio_placeholder }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_turn>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")


def chat_template(image_placeholder: str, audio_placeholder: str) -> str:
    return (CHAT_TEMPLATE.replace("{{ image_placeholder }}", image_placeholder)
            .replace("{{ audio_placeholder }}", audio_placeholder))


def build_tokenizer(extra_special_tokens: dict[str, str] | None = None):
    """A GemmaTokenizer with a BPE vocab of exactly VOCAB_SIZE ids, built offline in well under a second."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GemmaTokenizer

    # leave room for all 256 byte-fallback pieces, so any text (emoji included) encodes
    trainer = trainers.BpeTrainer(vocab_size=TEXT_VOCAB - 256 - 16, special_tokens=SPECIALS, show_progress=False)
    bpe = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace()
    bpe.train_from_iterator(CORPUS, trainer)
    trained = bpe.get_vocab()
    vocab: dict[str, int] = {}
    for token, _ in sorted(trained.items(), key=lambda kv: kv[1]):
        vocab[token] = len(vocab)
    # byte-fallback pieces so any text encodes
    for byte in range(256):
        piece = f"<0x{byte:02X}>"
        if piece not in vocab:
            vocab[piece] = len(vocab)
    while len(vocab) < TEXT_VOCAB:
        vocab[f"<unused{len(vocab)}>"] = len(vocab)
    for idx in range(TEXT_VOCAB, VOCAB_SIZE):
        vocab[MEDIA_TOKENS.get(idx, f"<unused{idx}>")] = idx
    merges: Any = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m)
              for m in json.loads(bpe.to_str())["model"]["merges"]]
    special = {"image_token": "<image_soft_token>", "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
               "audio_token": "<audio_soft_token>", "boa_token": "<start_of_audio>", "eoa_token": "<end_of_audio>"}
    special.update(extra_special_tokens or {})
    tokenizer = GemmaTokenizer(vocab=vocab, merges=merges, extra_special_tokens=special, add_bos_token=True,
                               bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>", "<|video|>"]})
    return tokenizer


def text_config(**extra) -> dict:
    """The tiny text model every family shares (hidden 64, 2 layers, head_dim 32), plus a family's own fields."""
    return dict(vocab_size=VOCAB_SIZE, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=2, num_key_value_heads=1, head_dim=32, sliding_window=64,
                max_position_embeddings=2048, pad_token_id=IDS["pad"], bos_token_id=IDS["bos"],
                eos_token_id=[IDS["eos"], IDS["end_of_turn"]], **extra)


# At the default init (std 0.02) the tied LM head's logits stay within about +-1.3 whatever the hidden state,
# so LoRA (which leaves embeddings and norms alone) could never make a confident prediction. Trained Gemmas
# reach far larger logits; scaling the final norm's output brings the tiny ones there without changing
# which token is most likely (scaling the embeddings instead makes the model echo its last input token).
LOGIT_SCALE = 10.0


def save(model, processor, folder: Path) -> Path:
    """Write a tiny model and its processor; answers end at <end_of_turn> as Gemma's do."""
    model.generation_config.eos_token_id = [IDS["eos"], IDS["end_of_turn"]]
    import torch

    norm = next(m for name, m in model.named_modules() if name.endswith("language_model.norm"))
    with torch.no_grad():
        if not norm.weight.any():  # Gemma 3's norm scales by (1 + weight)
            norm.weight.fill_(LOGIT_SCALE - 1)
        else:
            norm.weight.mul_(LOGIT_SCALE)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return Path(folder)
