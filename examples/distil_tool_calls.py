# %% [markdown]
# # Distil function calling into a model you own
#
# The workloads most worth moving off large remote models are structured: an agent's tool calls. Here a noisy
# teacher pool labels prompts that carry tools, the fusion votes on canonical calls (argument by argument when no
# whole call has a majority), and the built-in Gemma 3 270M is fine-tuned on the voted calls. Every system is
# scored on phrasings and argument values it never saw, and on functions it never saw at all, by the eval's
# `tool-call` scorer (arguments by value, parallel calls as a set).
#
# The functions are invented (a thermostat, a court booking, a paint order: enums, integers, numbers, optional
# fields), so no model has seen them. The teacher's members know the right call and get each argument wrong 30% of
# the time, each on its own. A control is trained on the same prompts with calls to the wrong function: it learns
# the format and nothing of which call fits, and scores at chance.
#
# **For real use**: capture your agent's traffic with `gemfuse serve --capture captured/` in front of strong
# remote models (tools and calls are kept), then `gemfuse distil run captured/ --teacher fusion/strong --eval
# my-test.jsonl --name my-caller`.

# %%
import json
import os
from pathlib import Path

from IPython.display import Markdown, display

QUICK = bool(os.environ.get("GEMFUSE_EXAMPLES_QUICK"))
WORK = Path(os.environ.get("GEMFUSE_EXAMPLES_WORK", "runs")) / "tool-calls"
WORK.mkdir(parents=True, exist_ok=True)
FUNCTIONS, PER_PHRASING, HELD, STEPS = (2, 1, 1, 4) if QUICK else (3, 2, 3, 36)

# %% [markdown]
# ## 1. The task: prompts with tools, held-out phrasings and values, unseen functions

# %%
from gemfuse.testing.call_task import SEEN, call_task

task = call_task(WORK / "task", per_phrasing=PER_PHRASING, held_per_phrasing=HELD, seen=SEEN[:FUNCTIONS])
for name in ("train", "held_out", "unseen"):
    rows = getattr(task, name).read_text().splitlines()
    first = json.loads(rows[0])
    said = first["messages"][0]["content"]
    call = first["messages"][1]["tool_calls"][0]["function"] if len(first["messages"]) > 1 else "(the teacher labels it)"
    print(f"{name}: {len(rows)} prompts, e.g. {said!r} -> {call}")

# %% [markdown]
# ## 2. A noisy teacher pool, fused by a vote on canonical calls

# %%
from gemfuse.fusion.preset import FusionPreset, Member
from gemfuse.testing.call_task import noisy_member
from gemfuse.testing.scripted import ScriptedModel, scripted_registry

members = {f"member-{i}": ScriptedModel(noisy_member(task, share=0.3, seed=i)) for i in range(3)}
registry = scripted_registry(members, {"teacher": FusionPreset(pool=[Member(model=m) for m in members], mode="vote")},
                             with_builtins=True)

# %% [markdown]
# ## 3. Label, filter, fine-tune the built-in Gemma 3 270M, evaluate on held-out phrasings
# The training here is sized for a CPU (`set`: batch 4, a fixed number of steps); without `set` the tested rule
# decides.

# %%
from gemfuse import distil

training = [f"train.max_steps={STEPS}", "train.batch_size=4"]
report = distil.run(task.train, teacher="fusion/teacher", eval=str(task.held_out), out=WORK / "distil",
                    registry=registry, cache=WORK / "cache.sqlite", name="caller", add_to_config=False, set=training)
row = json.loads((WORK / "distil" / "data" / "train.jsonl").read_text().splitlines()[0])
print("a training row's call:", row["messages"][-1]["tool_calls"][0]["function"])
print("how the members agreed:", row["meta"]["agreement"])
display(Markdown((WORK / "distil" / "eval" / "report.md").read_text()))
gain = report["gain_kept"]
print("gain kept:", f"{gain['value']:.0%} (95% interval {gain['interval'][0]:.0%} to {gain['interval'][1]:.0%})"
      if gain.get("value") is not None else gain["why"])

# %% [markdown]
# ## 4. The control: the same prompts, calls to the wrong function

# %%
from gemfuse.testing.call_task import train_control

train_control(task, WORK / "control", registry, name="control", set=training)

# %% [markdown]
# ## 5. Every system on held-out phrasings and values, and on functions never trained on

# %%
from gemfuse import run_sync
from gemfuse.evals.harness import arun

systems = ["caller", "control", report["student"]["base"]]
for name, items in (("held-out phrasings and values", task.held_out), ("functions never trained on", task.unseen)):
    # at the distil eval's answer length, what it asked already comes from the cache
    found = run_sync(arun(items, registry=registry, cache=WORK / "cache.sqlite", models=systems,
                          systems=["members", "fusion/teacher"], dev_fraction=0,
                          max_tokens=report["eval"]["max_tokens"]))
    display(Markdown(f"**{name}**"))
    display(Markdown("\n".join(["| system | tool-call accuracy (95% CI) | arguments right |", "|---|---|---|"] + [
        f"| {s['name']} | {s['accuracy']:.0%} ({s['interval'][0]:.0%}-{s['interval'][1]:.0%}) | {s['score']:.2f} |"
        for s in found.data["systems"]])))

# %% [markdown]
# ## 6. The student answers a request with tools

# %%
from gemfuse import GenerateOptions, Message

held = json.loads(task.held_out.read_text().splitlines()[-1])  # a phrasing it never saw
question = held["messages"][0]["content"]
answer = run_sync(registry.get("caller").generate([Message.user(question)],
                                                   GenerateOptions(tools=held["tools"], max_tokens=64, temperature=0)))
print(question, "->", answer.finish_reason, [(c.name, c.args()) for c in answer.tool_calls or []] or answer.text)
run_sync(registry.aclose())
