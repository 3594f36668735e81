# %% [markdown]
# # Fine-tune on images
#
# A LoRA on both the language model and the vision tower, trained on pictures and their answers
# (`data/images.jsonl`: each row holds an image part and a question; the loss is on the answer only).
# On the CPU this notebook uses a tiny random-weight Gemma 3 so that it runs in a minute; the loss still falls.
#
# **For a real model**: set `MODEL = "google/gemma-3-4b-it"` (or `google/gemma-4-E4B-it`) and drop the tiny
# model cell. On a Mac use `train.device=mps`; on a GPU `train.quantize=4bit` halves the memory again.
# `gemfuse plan MODEL --train lora --device mps` says first whether it fits.

# %%
import os
import tempfile
from pathlib import Path

from IPython.display import Image, display

QUICK = bool(os.environ.get("GEMFUSE_EXAMPLES_QUICK"))
WORK = Path(os.environ.get("GEMFUSE_EXAMPLES_WORK", "runs"))
STEPS = 4 if QUICK else 40

# %%
from gemfuse.testing import build_tiny_model

MODEL = build_tiny_model("gemma3", Path(tempfile.mkdtemp()) / "tiny-gemma3")  # replace with a real Gemma

# %% [markdown]
# ## Train: language model and vision tower

# %%
from gemfuse.tune import train

result = train("tune-image.toml", [f"model={MODEL}", f"out={WORK / 'image-lora'}", f"train.max_steps={STEPS}",
                                   "train.lr=3e-3", "train.dtype=float32", "run.progress=false"])
print(f"{result.steps} steps, loss {result.train_loss:.3f}")
display(Image(filename=str(result.run / "loss.png")))

# %% [markdown]
# ## Ask the fine-tune about a picture

# %%
import json

from gemfuse import GenerateOptions, Message, get_model, run_sync

row = json.loads(Path("data/images.jsonl").read_text().splitlines()[0])
picture = Path("data") / row["messages"][0]["content"][0]["path"]
display(Image(filename=str(picture)))
question = [Message.user("What colour is this picture?", images=[picture])]
answer = run_sync(get_model(str(result.run)).generate(question, GenerateOptions(max_tokens=4, temperature=0)))
print("fine-tune says:", answer.text, "| expected:", row["messages"][1]["content"])
