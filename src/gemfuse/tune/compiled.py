"""Regional compilation (`train.compile`): each transformer layer of the model through torch.compile, in place.

Gemma's layers are alike, so one compiled graph serves them all (the lean norms and the fused LoRA layers are
methods of one function each, so every layer passes the same guards); the first layer, whose input needs no
gradient, and a batch without padding, whose mask transformers leaves out, make a few more, each compiled once.
The first steps pay the compile; later steps run inductor's fused kernels: norms, GeGLU, rotary and the LoRA adds
in fewer passes over memory, and what backward keeps is chosen by its partitioner. Shapes are dynamic: batches
differ in length. The layers keep their names, so checkpoints and adapters are the same files as without it.
"""

from __future__ import annotations

import os
import shutil
from types import MethodType

from ..errors import ConfigError
from .base import repeated_layers

BACKEND = "inductor"  # torch's own compiler: C++ on a CPU, Triton on a GPU
SIDE_EFFECTS = "skip_fwd_side_effects_in_bwd_under_checkpoint"


def check_compilable(device: str) -> None:
    """Refuse, before anything loads, a compile that would fail at the first step: inductor writes C++ for a CPU
    (a compiler must be on PATH) and Triton kernels for a GPU."""
    if device == "cpu":
        names = [os.environ.get("CXX", ""), "g++", "clang++", "c++", "cl"]
        if not any(name and shutil.which(name) for name in names):
            raise ConfigError("train.compile on a CPU needs a C++ compiler on PATH (g++ or clang++; set CXX to "
                              "name another): install one, or set train.compile = false")
    elif device.startswith("cuda"):
        from torch.utils._triton import has_triton

        if not has_triton():
            raise ConfigError("train.compile on CUDA needs Triton (pip install triton, the version your torch "
                              "names), or set train.compile = false")


def compile_layers(model, backend: str | None = None) -> int:
    """Compile each of `model`'s transformer layers in place; how many."""
    import torch._dynamo

    layers = repeated_layers(model)
    if any(getattr(layer, "gradient_checkpointing", False) for layer in layers) and \
            hasattr(torch._dynamo.config, SIDE_EFFECTS):
        # the kernels library's hub-kernel wrappers (around Gemma's attention) set a context variable in forward:
        # a side effect a compiled checkpoint refuses to replay, which would leave every layer uncompiled.
        # Process-wide: dynamo's config is global, so it holds for every later compile in this process too
        setattr(torch._dynamo.config, SIDE_EFFECTS, True)
    for layer in layers:
        if getattr(layer, "gradient_checkpointing", False):
            # transformers' checkpointing calls torch's checkpoint, which turns compilation off inside it: the
            # layer would run uncompiled. Checkpoint inside the compiled forward instead, as one region: this
            # layer's forward is replaced (on the instance; its class and every other model keep theirs)
            layer.gradient_checkpointing = False
            layer.forward = MethodType(_checkpointed, layer)
        layer.compile(backend=backend or BACKEND, dynamic=True)
    return len(layers)


def _checkpointed(layer, *args, **kwargs):
    from torch.utils.checkpoint import checkpoint

    return checkpoint(type(layer).forward, layer, *args, use_reentrant=False, **kwargs)
