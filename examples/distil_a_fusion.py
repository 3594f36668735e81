# %% [markdown]
# # Distil a fusion into a model you own
#
# A fusion answers better than its members and costs all of them plus the judge on every request. Distilling
# turns its answers on *your* prompts into a small model of your own: label the prompts with the fusion, filter
# the rows it was unsure of, fine-tune a student, and measure on held-out items how much of the fusion's gain
# over the student's base the student kept, and at what share of the cost.
#
# Here the teacher is a fusion of the two built-in models judged by SmolLM2 (best-of), the prompts are arithmetic
# questions, and the student is the built-in Gemma 3 270M. The teacher is small, so its labels are often wrong:
# the point is the loop.
#
# **For real use**: put strong remote models in a preset (`[presets.strong]` in your config, with prices), capture
# real traffic with `gemfuse serve --capture captured/`, and run `gemfuse distil run captured/ --teacher
# fusion/strong --eval my-test.jsonl --name my-student`.

# %%
import json
import os
from pathlib import Path

from IPython.display import Image, Markdown, display

QUICK = bool(os.environ.get("GEMFUSE_EXAMPLES_QUICK"))
WORK = Path(os.environ.get("GEMFUSE_EXAMPLES_WORK", "runs"))
PROMPTS, TEST = (6, 3) if QUICK else (200, 40)
WORK.mkdir(parents=True, exist_ok=True)
CONFIG = WORK / "distil-config.toml"  # the student is registered here (your own config by default)
CONFIG.write_text("""# the teacher: the built-in models, the better answer chosen by SmolLM2
[presets.pair]
pool = ["smollm2-135m", "gemma-3-270m"]
judge = "smollm2-135m"
mode = "best-of"
max_tokens = 24
judge_max_tokens = 32
temperature = 0
""")  # gemfuse distil adds the student below

# %% [markdown]
# ## 1. Prompts without answers, and a held-out test set
# A training prompt that is also a test item would be an error naming both lines, raised before any call.

# %%
from gemfuse.evals.generators import generate

test = generate("arithmetic", TEST, seed=0)
held = {row["prompt"] for row in test}
prompts = [row["prompt"] for row in generate("arithmetic", PROMPTS * 2, seed=1) if row["prompt"] not in held][:PROMPTS]
(WORK / "prompts.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
(WORK / "test.jsonl").write_text("".join(json.dumps({"prompt": r["prompt"], "answer": r["answer"]}) + "\n"
                                         for r in test))
print(prompts[:3])

# %% [markdown]
# ## 2. Label: every prompt through the fusion, every call cached
# A re-run (or a run killed halfway and started again) pays no call twice.

# %%
from gemfuse import distil

labelled = distil.label(WORK / "prompts.jsonl", teacher="fusion/pair", out=WORK / "distil" / "data",
                        eval=str(WORK / "test.jsonl"), max_tokens=32, config=CONFIG,
                        cache=WORK / "distil-cache.sqlite")
print(f"{labelled.labelled} rows, {sum(labelled.calls_made.values())} calls, {labelled.seconds:.0f} s")
row = json.loads((WORK / "distil" / "data" / "labelled.jsonl").read_text().splitlines()[0])
print(json.dumps({"answer": row["messages"][-1]["content"],
                  **{k: row["meta"][k] for k in ("members", "agreement", "judge")}}, indent=1))

# %% [markdown]
# ## 3. Filter: the rows the pool agreed on
# Each rule drops rows with its reason (`dropped.jsonl`); here, rows whose two members gave different numbers.

# %%
strict = distil.filter(WORK / "distil" / "data", min_agree=2)
print(f"kept {strict.kept} of {strict.rows}; dropped by reason: {strict.dropped}")

# %% [markdown]
# ## 4. The whole loop: label -> filter -> tune -> eval -> register
# With two small members that rarely agree, this run keeps every row the judge chose (the default filter);
# the training length comes from a tested rule unless `set` says otherwise.

# %%
steps = ["train.max_steps=4"] if QUICK else []
report = distil.run(WORK / "prompts.jsonl", teacher="fusion/pair", eval=str(WORK / "test.jsonl"),
                    out=WORK / "distil", name="arithmetic-student", max_tokens=32, set=steps, config=CONFIG,
                    cache=WORK / "distil-cache.sqlite")
display(Markdown((WORK / "distil" / "eval" / "report.md").read_text()))
display(Image(filename=str(WORK / "distil" / "eval" / "accuracy_cost.png")))
gain = report["gain_kept"]
print("gain kept:", f"{gain['value']:.0%} (95% interval {gain['interval'][0]:.0%} to {gain['interval'][1]:.0%})"
      if gain.get("value") is not None else gain["why"])
print("training:", report["training"]["rule"])

# %% [markdown]
# ## 5. The student is a model of the config now

# %%
from gemfuse import GenerateOptions, Message, get_model, run_sync

student = get_model("arithmetic-student", CONFIG)
answer = run_sync(student.generate([Message.user(prompts[0])], GenerateOptions(max_tokens=16, temperature=0)))
print(prompts[0], "->", answer.text)
