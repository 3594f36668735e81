"""The folders the dashboard may read, and the one way a name from a request becomes a path: confined to them
(no `..`, no absolute path, no symlink that leads out)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MAX_DEPTH = 4  # how deep under a folder runs and reports are looked for


class OutsideFolders(ValueError):
    """A name that would lead outside the configured folders."""


@dataclass(frozen=True)
class Folders:
    """Named roots: "runs", "evals", "distil", "capture". A root that is None or missing simply holds nothing."""

    runs: Path | None = None
    evals: Path | None = None
    distil: Path | None = None
    capture: Path | None = None

    @classmethod
    def of(cls, **given: str | Path | None) -> Folders:
        return cls(**{k: Path(v).expanduser().absolute() if v else None for k, v in given.items()})

    def roots(self, *names: str) -> list[tuple[str, Path]]:
        found = [(name, getattr(self, name)) for name in names]
        return [(name, path) for name, path in found if path is not None]

    def describe(self) -> dict[str, dict]:
        return {name: {"path": str(path), "exists": path.is_dir()} for name, path in self.roots(*KINDS)}

    def resolve(self, ident: str, allowed: tuple[str, ...]) -> Path:
        """`runs/my-lora` -> the folder, refusing anything that is not inside the named root."""
        root_name, _, rest = ident.strip("/").partition("/")
        if root_name not in allowed or getattr(self, root_name) is None:
            raise OutsideFolders(f"{ident!r}: not under the dashboard's folders ({', '.join(allowed)})")
        parts = Path(rest).parts
        if not rest or Path(rest).is_absolute() or any(p in ("..", ".") for p in parts) or "\\" in rest:
            raise OutsideFolders(f"{ident!r}: give a path inside {root_name}/, without '..'")
        root: Path = getattr(self, root_name)
        path = (root / rest).resolve()
        if not path.is_relative_to(root.resolve()):
            raise OutsideFolders(f"{ident!r} leads outside {root_name}/ (a link to elsewhere)")
        return path

    def ident(self, path: Path) -> str | None:
        """The name under which the page asks for `path`, or None when it is under no root."""
        resolved = path.resolve()
        for name, root in self.roots(*KINDS):
            root = root.resolve()
            if resolved.is_relative_to(root) and resolved != root:
                return f"{name}/{resolved.relative_to(root).as_posix()}"
        return None

    def find(self, filename: str, *names: str) -> Iterator[tuple[str, Path]]:
        """(ident, folder) of every folder holding `filename` under the named roots, newest first; symlinked
        folders are not entered and a symlinked file that leads out is skipped."""
        found: list[tuple[float, str, Path]] = []
        for name, root in self.roots(*names):
            if not root.is_dir():
                continue
            real_root = root.resolve()
            for walked, dirs, files in os.walk(root):
                folder = Path(walked)
                depth = len(folder.relative_to(root).parts)
                if depth >= MAX_DEPTH:
                    dirs[:] = []
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                if filename not in files or depth == 0:
                    continue
                target = folder / filename
                if not target.resolve().is_relative_to(real_root):
                    continue
                found.append((target.stat().st_mtime, f"{name}/{folder.relative_to(root).as_posix()}", folder))
        for _, ident, path in sorted(found, key=lambda f: -f[0]):
            yield ident, path


KINDS = ("runs", "evals", "distil", "capture")




def shown_path(path: Path) -> str:
    """A path as the user would type it where the server runs: relative when below the working folder."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
