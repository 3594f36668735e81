# %% [markdown]
# # Does fusion beat the best single model?
#
# Measure it on a task with right answers: the built-in arithmetic set, the two built-in models, and three
# ways of fusing them. Every answer is cached (SQLite), so a second run costs nothing and a killed run resumes.
#
# **For your own task**: pass your JSONL (`prompt` / `answer` rows, or chats whose last assistant turn is the
# reference) instead of `builtin:arithmetic`, put your fine-tune (its run folder) and remote models in
# `models`, and use a strong remote judge for `best-of` and `merge`. Small models are poor judges: the report
# says so (position bias).

# %%
import os
from pathlib import Path

from IPython.display import Image, Markdown, display

QUICK = bool(os.environ.get("GEMFUSE_EXAMPLES_QUICK"))
WORK = Path(os.environ.get("GEMFUSE_EXAMPLES_WORK", "runs"))
ITEMS = 4 if QUICK else 60

# %%
from gemfuse import evaluate

report = evaluate("builtin:arithmetic", pool=["smollm2-135m", "gemma-3-270m"], judge="smollm2-135m",
                  systems=["members", "vote", "best-of"], n=ITEMS, max_tokens=32, out=WORK / "eval",
                  cache=WORK / "eval-cache.sqlite")
display(Markdown(report.to_markdown()))

# %% [markdown]
# Accuracy against cost (local models cost nothing per token, so the cost axis is their latency here):

# %%
if (WORK / "eval" / "accuracy_cost.png").is_file():
    display(Image(filename=str(WORK / "eval" / "accuracy_cost.png")))
for finding in report.data["findings"]:
    print("-", finding)
