"""Make PyPI's CUDA-built torchvision importable beside a CPU-only torch.

That torchvision's compiled ops fail to load against CPU torch, and its Python side then dies with
"operator torchvision::nms does not exist", taking every transformers image import with it. Declaring the two
op schemas first lets it import; its compiled ops stay unusable, which is why we use the PIL image processors.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import threading

_done = False


def make_torchvision_importable() -> None:
    global _done
    if _done:
        return
    _done = True
    if importlib.util.find_spec("torchvision") is None:
        return
    import torch

    if torch.version.cuda is not None:  # a CUDA torch loads torchvision's ops itself
        return
    if "+cpu" in importlib.metadata.version("torchvision"):
        return
    if torch._C._jit_get_schemas_for_operator("torchvision::nms"):
        return
    lib = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):
        lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _LIBS.append(lib)  # the registration lives as long as this object does


_LIBS: list = []


# transformers' from_pretrained swaps module-level functions (weight init, weight tying) for no-ops while it runs
# and puts them back after; two loads on two threads can leave them swapped for the rest of the process (a later
# model then keeps its tied head on the meta device). Every model load in gemfuse holds this lock.
MODEL_LOADING = threading.RLock()


def import_transformers():
    """`transformers`, imported after the shim above: the one way gemfuse imports it."""
    make_torchvision_importable()
    import transformers

    return transformers
