# %% [markdown]
# # Fine-tune on audio
#
# Gemma 3n and Gemma 4 hear: this LoRA trains the language model and the audio tower on short recordings and
# their labels (`data/audio.jsonl`). On the CPU it uses a tiny random-weight Gemma 3n so that it runs quickly.
#
# **For a real model**: `MODEL = "google/gemma-3n-E2B-it"` (or `google/gemma-4-E2B-it`); audio is resampled to
# the processor's rate for you. On a Mac pass `train.device=mps`; on CUDA `train.quantize=4bit` for QLoRA.

# %%
import os
import tempfile
from pathlib import Path

from IPython.display import Audio, Image, display

QUICK = bool(os.environ.get("GEMFUSE_EXAMPLES_QUICK"))
WORK = Path(os.environ.get("GEMFUSE_EXAMPLES_WORK", "runs"))
STEPS = 4 if QUICK else 40

# %%
from gemfuse.testing import build_tiny_model

MODEL = build_tiny_model("gemma3n", Path(tempfile.mkdtemp()) / "tiny-gemma3n")  # replace with a real Gemma 3n / 4

# %%
from gemfuse.tune import train

result = train("tune-audio.toml", [f"model={MODEL}", f"out={WORK / 'audio-lora'}", f"train.max_steps={STEPS}",
                                   "train.lr=3e-3", "train.dtype=float32", "run.progress=false"])
print(f"{result.steps} steps, loss {result.train_loss:.3f}")
display(Image(filename=str(result.run / "loss.png")))

# %% [markdown]
# ## Listen, then ask the fine-tune

# %%
import json

from gemfuse import GenerateOptions, Message, get_model, run_sync

row = json.loads(Path("data/audio.jsonl").read_text().splitlines()[0])
clip = Path("data") / row["messages"][0]["content"][0]["path"]
display(Audio(filename=str(clip)))
question = [Message.user("Is this tone low, mid or high?", audio=[clip])]
answer = run_sync(get_model(str(result.run)).generate(question, GenerateOptions(max_tokens=4, temperature=0)))
print("fine-tune says:", answer.text, "| expected:", row["messages"][1]["content"])
