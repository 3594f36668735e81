"""Fine-tuning: LoRA on Gemma 3 / 3n / 4 with text, image and audio data.

    from gemfuse.tune import load_tune_config, train
    result = train(load_tune_config("my.toml", ["train.lr=1e-4"]))
    print(result.adapter)            # a run folder is a model: gemfuse ask -m runs/my-lora
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_face

lazy_face(__name__, {
    "TuneConfig": ".config", "init_config": ".config", "load_tune_config": ".config", "DataError": ".train",
    "DivergedError": ".train", "Result": ".train", "resume": ".train", "train": ".train",
})

if TYPE_CHECKING:
    from .config import TuneConfig, init_config, load_tune_config
    from .train import DataError, DivergedError, Result, resume, train

__all__ = ["DataError", "DivergedError", "Result", "TuneConfig", "init_config", "load_tune_config", "resume", "train"]
