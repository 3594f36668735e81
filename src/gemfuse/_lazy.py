"""A package face whose names load on first use: `from gemfuse import distil; distil.run(...)` imports the
pipeline then, so a command line that only needs a package's settings does not import the rest of it.

A face may export a function named like one of its modules (distil's `label` from distil/label.py): importing
that module would otherwise make the package's attribute the module, so the face keeps the function's name for
the function (the module stays in sys.modules), as an eager `from .api import label` did."""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


class LazyFace(types.ModuleType):
    _lazy_where: dict[str, str]

    def __getattr__(self, name: str) -> Any:
        where = self.__dict__.get("_lazy_where", {})
        if name not in where:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name], self.__name__), name)
        self.__dict__[name] = value
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and name in self.__dict__.get("_lazy_where", {}):
            return  # a module named like an exported function: the name stays the function's
        super().__setattr__(name, value)


def lazy_face(package: str, where: dict[str, str]) -> None:
    """Make `package` load each name of `where` (name -> module, relative) on first use."""
    module = sys.modules[package]
    module.__dict__["_lazy_where"] = where
    module.__class__ = LazyFace
