# %% [markdown]
# # Serve your fine-tune and fuse it with other models
#
# A fine-tune is a model like any other: put it in the config, serve it behind one OpenAI-compatible endpoint
# beside the built-in models (and any remote API), and let a fusion preset combine their answers. Here the
# fine-tune is a tiny one trained in a few seconds, so its answers are noise: the point is the wiring.
#
# **For real use**: train `google/gemma-4-E2B-it` (see `fine_tune_text.py`), add remote models to the config
# (`backend = "openai"`, `base_url`, `api_key_env`), and run `gemfuse serve --host 0.0.0.0` with
# `[server] api_keys_env` set so that only your clients can call it.

# %%
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUICK = bool(os.environ.get("GEMFUSE_EXAMPLES_QUICK"))
WORK = Path(os.environ.get("GEMFUSE_EXAMPLES_WORK", "runs"))

# %% [markdown]
# ## 1. A fine-tune to serve

# %%
from gemfuse.testing import build_tiny_model
from gemfuse.tune import train

base = build_tiny_model("gemma3", Path(tempfile.mkdtemp()) / "tiny-gemma3")
run = train("tune-text.toml", [f"model={base}", f"out={WORK / 'serve-lora'}", "train.max_steps=3",
                               "train.dtype=float32", "run.progress=false"]).run

# %% [markdown]
# ## 2. One config: the fine-tune and a fusion preset
# A preset is a model named `fusion/<preset>`; `vote` needs no judge.

# %%
config = WORK / "serve-config.toml"
config.write_text(f'''
[models.my-fine-tune]
backend = "transformers"
path = "{base}"
adapter = "{run / 'adapter'}"

[presets.mine]
pool = ["smollm2-135m", "gemma-3-270m", "my-fine-tune"]
mode = "vote"
min_answers = 2
max_tokens = 24
temperature = 0
''')

# %% [markdown]
# ## 3. Serve it and call it with the official `openai` client

# %%
with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
server = subprocess.Popen([sys.executable, "-m", "gemfuse.cli", "serve", "--port", str(port)],
                          env={**os.environ, "GEMFUSE_CONFIG": str(config)})
import httpx

for _ in range(120):
    try:
        httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1)
        break
    except httpx.HTTPError:
        time.sleep(0.5)

# %%
from openai import OpenAI

client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused-on-localhost")
print([m.id for m in client.models.list().data])
for model in ("my-fine-tune", "fusion/mine"):
    reply = client.chat.completions.create(model=model, max_tokens=24, temperature=0,
                                           messages=[{"role": "user", "content": "What is 2 + 3?"}])
    print(f"{model:>14}: {reply.choices[0].message.content!r}")

# %%
server.terminate()
server.wait(timeout=30)

# %% [markdown]
# ## 4. The same fusion in Python, with its trace

# %%
from gemfuse import fuse
from gemfuse.registry import Registry

result = fuse("What is 2 + 3? Answer with the number.", preset="mine", registry=Registry.load(config))
print("fused:", result.text)
for candidate in result.trace.candidates:
    print(f"  {candidate.model:>14}: {candidate.text!r}")
