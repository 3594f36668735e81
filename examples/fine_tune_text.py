# %% [markdown]
# # Fine-tune Gemma on your own text
#
# Teach the built-in Gemma 3 270M some made-up facts with LoRA, on the CPU, then ask the fine-tune. The data is
# gemfuse's JSONL chat format (`data/text.jsonl`); the same steps work for any Gemma 3 / 3n / 4.
#
# **For a real Gemma 4 on a Mac or a GPU**: set `MODEL` to a hub id such as `google/gemma-4-E2B-it` (or a
# folder), run `gemfuse plan MODEL --train lora --device mps` (or `cuda`) first to see whether it fits, and on
# CUDA add `train.quantize=4bit` for QLoRA. Nothing else changes.

# %%
import os
import subprocess
import sys
from pathlib import Path

from IPython.display import Image, display

QUICK = bool(os.environ.get("GEMFUSE_EXAMPLES_QUICK"))  # the test suite runs every notebook, in a few steps
WORK = Path(os.environ.get("GEMFUSE_EXAMPLES_WORK", "runs"))
MODEL = "gemma-3-270m-hf"  # the built-in Gemma 3 270M on transformers
STEPS = 3 if QUICK else 60

# %% [markdown]
# ## 1. Check the data before spending compute
# Every problem is reported with its file and line; the exit code is 1 when there are errors.

# %%
done = subprocess.run([sys.executable, "-m", "gemfuse.cli", "data", "validate", "data/text.jsonl", "--model", "gemma3",
                       "--max-length", "128"], capture_output=True, text=True)  # = `gemfuse data validate ...`
print(done.stdout[-1500:])
assert done.returncode == 0

# %% [markdown]
# ## 2. Train a LoRA adapter
# `tune-text.toml` holds every setting with a comment; `overrides` work like `gemfuse tune ... --set`.

# %%
from gemfuse.tune import train

result = train("tune-text.toml", [f"model={MODEL}", f"out={WORK / 'text-lora'}", f"train.max_steps={STEPS}",
                                  "data.max_length=128", "train.lr=1e-3", "run.progress=false"])
print(f"{result.steps} steps, final loss {result.train_loss:.3f}, {result.tokens} tokens in {result.seconds:.0f} s")
display(Image(filename=str(result.run / "loss.png")))

# %% [markdown]
# ## 3. Ask the base model and the fine-tune
# A run folder is a model: the same runtime, server and fusion pool take it by its path.

# %%
from gemfuse import GenerateOptions, Message, get_model, run_sync

question = [Message.user("Tell me the capital of Velmoria.")]
options = GenerateOptions(max_tokens=16, temperature=0)
for name in (MODEL, str(result.run)):
    answer = run_sync(get_model(name).generate(question, options))
    print(f"{Path(name).name:>16}: {answer.text.strip()}")
