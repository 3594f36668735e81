"""`make test-compat`: the model-touching tests in fresh environments at both ends of the declared ranges.

floors: every requirement of the package (its core and its runtime extras) at the floor pyproject.toml declares,
        the rest resolved by pip as usual ("lowest-direct"); torch and torchvision stay at the lock's CPU build,
        the only one this machine can install (their floors were seen on a GPU machine instead).
newest: the newest releases pip resolves today, torch pinned as in constraints.txt.
Test tools (the dev extra) are the newest in both, less the agent libraries (the Agents SDK, LangChain): no
test here uses them, and they need far newer releases than the floors (pydantic among them). The floors leave
out the embed extra: its wordllama needs numpy 2, and numpy's floor (1.26) is the transformers extra's. Each
environment lives under .venv-compat/; the table of versions and results is printed and written to
.venv-compat/report.md.

    python tools/compat.py [floors] [newest]
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / ".venv-compat"
RUNTIME_EXTRAS = ("llamacpp", "transformers", "cuda", "serve", "tune")  # embed: its wordllama needs numpy 2
AGENT_LIBRARIES = ("openai-agents", "langchain-openai")
TESTS = ["tests/test_tune.py", "tests/test_tune_learns.py", "tests/test_tune_patches.py",
         "tests/test_tune_lean_norms.py", "tests/test_tune_attention.py", "tests/test_tune_lora_matmuls.py",
         "tests/test_tune_loss.py", "tests/test_tune_encoded.py", "tests/test_tune_export.py",
         "tests/test_data_collate.py", "tests/test_transformers_backend.py", "tests/test_llamacpp_backend.py",
         "tests/test_distil_media.py", "tests/test_weights_quantize.py", "tests/test_logprobs_real.py",
         "tests/test_certainty.py", "tests/test_tune_shard.py", "tests/test_tune_padding_free.py",
         "tests/test_agents_chat.py", "tests/test_tune_shared_prefix.py",
         "tests/test_finetune_gguf.py"]
SHOWN = ("torch", "transformers", "peft", "accelerate", "tokenizers", "timm", "llama-cpp-python", "xllamacpp",
         "datasets", "torchao", "numpy", "pydantic", "jsonschema", "llguidance", "wordllama")
FLOOR = re.compile(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*>=\s*([0-9][^,;\s]*)")


def floors() -> list[str]:
    """`name==floor` for each requirement with a floor, in the core and the runtime extras."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in RUNTIME_EXTRAS:
        requirements += [r for r in project["optional-dependencies"][extra] if not r.startswith("gemfuse[")]
    pins = {}
    for requirement in requirements:
        match = FLOOR.match(requirement.split(";")[0].strip())
        if match:
            pins[match.group(1).lower()] = f"{match.group(1)}=={match.group(2)}"
    locked = dict(line.split("==", 1) for line in (ROOT / "constraints.txt").read_text().split() if "==" in line)
    for name, version in locked.items():  # torch: only the CPU build on this machine's disk
        pins[name] = f"{name}=={version}"
    return sorted(pins.values())


def test_tools() -> list[str]:
    """The dev extra's requirements, less the agent libraries."""
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    return [r for r in dev if re.split(r"[<>=\[;\s]", r, maxsplit=1)[0] not in AGENT_LIBRARIES]


def build(kind: str) -> Path:
    venv = HOME / kind
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    constraints = HOME / f"{kind}-constraints.txt"
    constraints.write_text("\n".join(floors()) + "\n" if kind == "floors" else (ROOT / "constraints.txt").read_text())
    extras = "llamacpp,transformers,serve,tune" if kind == "floors" else "all"  # numpy 1.26 stays in the floors
    subprocess.run([*pip, "-c", str(constraints), "-e", f"{ROOT}[{extras}]", *test_tools()], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "gemfuse.gguf_tools"], check=True, stdout=subprocess.DEVNULL)
    return venv


def versions(venv: Path) -> dict[str, str]:
    out = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"], check=True,
                         capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        name, _, version = line.partition("==")
        found[name.lower().replace("_", "-")] = version
    return found


def run_tests(venv: Path, kind: str) -> tuple[str, float]:
    began = time.perf_counter()
    log = HOME / f"{kind}-tests.log"
    with log.open("w") as handle:
        subprocess.run([str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE", *TESTS],
                       cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT)
    lines = log.read_text().splitlines()
    summary = next((line.strip("= ") for line in reversed(lines) if " in " in line and ("passed" in line or
                                                                                     "failed" in line)), "no summary")
    failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    return summary + "".join(f"\n    {line}" for line in failed), time.perf_counter() - began


def main(kinds: list[str]) -> None:
    HOME.mkdir(exist_ok=True)
    for kind in kinds:
        venv = build(kind)
        found = versions(venv)
        summary, seconds = run_tests(venv, kind)
        shown = ", ".join(f"{name} {found.get(name, '-')}" for name in SHOWN)
        section = f"## {kind}\n{shown}\n\n{summary} ({seconds / 60:.1f} min)\n"
        (HOME / f"{kind}-report.md").write_text(section)
        print(section, flush=True)
    sections = [HOME / f"{kind}-report.md" for kind in ("floors", "newest")]  # the latest of each, run or not now
    (HOME / "report.md").write_text("\n".join(p.read_text() for p in sections if p.exists()))


if __name__ == "__main__":
    main(sys.argv[1:] or ["floors", "newest"])
