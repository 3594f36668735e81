# %% [markdown]
# # Will a big Gemma fit? Plan it, then quantise a small one and measure the cost
#
# `gemfuse plan` reads a model's config (no weights) and says, per precision, how much memory the weights, the
# KV cache (honouring Gemma's sliding-window layers) and the runtime need, whether it fits, and the longest
# context that does. `gemfuse quantize` makes a llama.cpp GGUF and measures what the quantisation cost.
#
# **For real use**: `gemfuse plan google/gemma-3-27b-it --device mps` reads the config from the hub; then
# `gemfuse pull google/gemma-3-27b-it` (or `gemfuse pull REPO --gguf Q4_K_M` for a GGUF repository).

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt

QUICK = bool(os.environ.get("GEMFUSE_EXAMPLES_QUICK"))
WORK = Path(os.environ.get("GEMFUSE_EXAMPLES_WORK", "runs"))

# %% [markdown]
# ## 1. Gemma 3 27B on a 24 GB GPU and on a 64 GB Mac
# Its published config, as on the hub:

# %%
from gemfuse.weights.plan import GB, plan
from gemfuse.weights.shape import from_config

gemma3_27b = from_config({
    "model_type": "gemma3",
    "text_config": {"model_type": "gemma3_text", "head_dim": 128, "hidden_size": 5376, "intermediate_size": 21504,
                    "max_position_embeddings": 131072, "num_attention_heads": 32, "num_hidden_layers": 62,
                    "num_key_value_heads": 16, "sliding_window": 1024, "vocab_size": 262208},
    "vision_config": {"hidden_size": 1152, "image_size": 896, "intermediate_size": 4304, "num_hidden_layers": 27,
                      "patch_size": 14}}, "gemma-3-27b-it")
print(f"{gemma3_27b.params / 1e9:.1f} B parameters")
for device, memory in (("cuda", 24), ("mps", 64)):
    result = plan(gemma3_27b, device=device, memory_gb=memory, context=32768)
    best = result.best()
    print(f"{device} {memory} GB at 32K context: widest that fits = {best.needs.precision if best else None}")
    for row in result.rows[:6]:
        print(f"   {row.needs.precision:>13}: {row.needs.total / GB:6.1f} GB  {row.verdict:<18} "
              f"longest context {row.max_context:,}")

# %% [markdown]
# Memory against context: the sliding-window layers stop growing after 1,024 tokens in transformers, while
# llama.cpp keeps a full-size cache for them.

# %%
contexts = [1024 * 2**i for i in range(8)]
plt.figure(figsize=(7, 4))
for precision in ("bf16", "bnb-4bit", "gguf:Q4_K_M"):
    totals = [next(r.needs.total for r in plan(gemma3_27b, device="cuda", memory_gb=80, context=c).rows
                   if r.needs.precision == precision) / GB for c in contexts]
    plt.plot(contexts, totals, marker="o", label=precision)
plt.axhline(24 * 0.9, color="grey", linestyle="--", label="24 GB GPU (90%)")
plt.xscale("log", base=2)
plt.xlabel("context (tokens)")
plt.ylabel("GB")
plt.legend()
plt.title("Gemma 3 27B: memory for inference")
plt.show()

# %% [markdown]
# ## 2. Quantise SmolLM2 and measure what it cost
# Perplexity on a fixed text and decode speed, each against the 16-bit GGUF.

# %%
from gemfuse.weights.quantize import quantize

quants = ["Q4_K_M"] if QUICK else ["Q8_0", "Q5_K_M", "Q4_K_M", "Q3_K_M"]
done = [quantize("smollm2-135m-hf", f"gguf:{q}", out=WORK / "quantized" / f"smollm2-{q}.gguf") for q in quants]
print(f"{'':>8}{'MiB':>8}{'perplexity':>12}{'tok/s':>8}")
print(f"{'F16':>8}{done[0].source.bytes / 2**20:>8.0f}{done[0].source.perplexity:>12.3f}"
      f"{done[0].source.tokens_per_s:>8.1f}")
for result in done:
    print(f"{result.quant:>8}{result.result.bytes / 2**20:>8.0f}{result.result.perplexity:>12.3f}"
          f"{result.result.tokens_per_s:>8.1f}")

# %%
plt.figure(figsize=(6, 4))
plt.scatter([done[0].source.bytes / 2**20], [done[0].source.perplexity], label="F16")
for result in done:
    plt.scatter([result.result.bytes / 2**20], [result.result.perplexity], label=result.quant)
plt.xlabel("size (MiB)")
plt.ylabel("perplexity (lower is better)")
plt.legend()
plt.title("SmolLM2-135M: size against quality")
plt.show()
