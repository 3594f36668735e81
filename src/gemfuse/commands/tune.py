"""`gemfuse tune` and `gemfuse export`."""

from __future__ import annotations

import sys
from pathlib import Path


def run_tune(config: Path | None, overrides: list[str], resume_run: Path | None, init: str | None) -> int:
    from ..tune import init_config, resume, train

    if init:
        print(init_config(init))
        return 0
    if resume_run is not None:
        result = resume(resume_run, overrides)
    elif config is None:
        print("error: give a config file (gemfuse tune --init text > my.toml makes one), or --resume RUN_DIR",
              file=sys.stderr)
        return 2
    else:
        result = train(config, overrides)
    return 130 if result.interrupted else 0


def run_export(run: Path, to: str, quant: str | None, out: Path | None, prompt: str) -> int:
    from ..tune.export import export

    result = export(run, to, quant=quant, out=out, check_prompt=prompt)
    print(f"{to}: {result.path}")
    if result.sample is not None:
        print(f"generated from the export: {result.sample!r}")
    if result.command is not None:
        print(f"serve it with:\n  {result.command}\nand put it behind gemfuse (config.toml):\n{result.config}")
    return 0
