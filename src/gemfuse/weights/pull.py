"""Get weights onto this machine and name them: a hub repository (huggingface_hub's own cache, resumable, token
from $HF_TOKEN), or a local folder or GGUF file copied into gemfuse's model folder (resumable too: an
interrupted copy continues from its `.part` file). Then the model is written into the user config under a short
name with the backend its files need, so `gemfuse ask -m NAME` works at once.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, GemfuseError, SettingError
from ..paths import cache_dir, config_path, write_file

CHUNK = 8 * 2**20


class PullError(GemfuseError):
    """Weights could not be fetched; the message says why and what to do."""


@dataclass
class Pulled:
    name: str
    backend: str
    path: Path
    bytes: int  # bytes now on disk for this model
    copied: int  # bytes transferred by this call (less than `bytes` when a copy resumed or was already there)
    config: Path


def models_dir() -> Path:
    return cache_dir() / "models"


def short_name(source: str) -> str:
    base = Path(source.rstrip("/")).name
    base = base.removesuffix(".gguf")
    return re.sub(r"[^a-z0-9._-]+", "-", base.lower()).strip("-") or "model"


def pull(source: str, *, revision: str | None = None, include: list[str] | None = None, gguf: str | None = None,
         name: str | None = None, config: str | Path | None = None, force: bool = False,
         progress: Callable[[int, int], None] | None = None) -> Pulled:
    """Fetch `source` (hub id, folder or GGUF file) and register it in the config as `name`."""
    name = name or short_name(source)
    config_file = Path(config).expanduser() if config else config_path()
    check_name_free(config_file, name, force)
    local = Path(source).expanduser()
    if local.exists():
        path, total, copied = copy_local(local, models_dir() / name, include, gguf, progress)
    elif source.count("/") == 1 and not source.startswith((".", "/", "~")):
        path, total, copied = download(source, revision, include, gguf)
    else:
        raise PullError(f"{source}: no such file or folder, and not a hub id (owner/name)")
    backend, weights = backend_for(path, gguf)
    entry = {"backend": backend, "path": str(weights), "description": f"pulled from {source}"}
    if revision:
        entry["description"] += f" @ {revision}"
    register(config_file, name, entry)
    return Pulled(name, backend, weights, total, copied, config_file)


# -- which backend reads these files -------------------------------------------------------------------------------
def backend_for(path: Path, gguf: str | None) -> tuple[str, Path]:
    if path.is_file():
        if path.suffix != ".gguf":
            raise PullError(f"{path}: neither a GGUF file nor a model folder")
        return "llamacpp", path
    if (path / "config.json").is_file() and not gguf:
        return "transformers", path
    files = pick_gguf(sorted(p.name for p in path.glob("*.gguf")), gguf, str(path))
    return "llamacpp", path / files[0]


def pick_gguf(names: list[str], quant: str | None, where: str) -> list[str]:
    """The GGUF files for `quant` (Q4_K_M, q8_0, ...); a split model's parts all match."""
    ggufs = [n for n in names if n.endswith(".gguf") and "mmproj" not in n.lower()]
    if quant:
        wanted = quant.upper().replace("-", "_")
        matching = [n for n in ggufs if wanted in n.upper().replace("-", "_")]
        if not matching:
            raise PullError(f"{where}: no GGUF for {quant}; there are: {', '.join(ggufs) or 'none'}")
        return matching
    if not ggufs:
        raise PullError(f"{where}: no config.json and no .gguf file")
    if len(ggufs) > 1:
        raise PullError(f"{where}: several GGUF files ({', '.join(ggufs)}); pick one by its quant type "
                        "(gguf = QUANT; --gguf on the command line)")
    return ggufs


# -- local copies, resumable ---------------------------------------------------------------------------------------
def copy_local(source: Path, target_dir: Path, include: list[str] | None, gguf: str | None,
               progress: Callable[[int, int], None] | None) -> tuple[Path, int, int]:
    if source.is_file():
        files = [source]
    else:
        files = [f for f in sorted(source.rglob("*")) if f.is_file() and not f.name.endswith(".part")]
        if not gguf and not (source / "config.json").is_file():
            pick_gguf([f.name for f in files], None, str(source))  # say "which one?" before copying anything
        if gguf:
            chosen = set(pick_gguf([f.name for f in files], gguf, str(source)))
            files = [f for f in files if not f.name.endswith(".gguf") or f.name in chosen]
        if include:
            files = [f for f in files if any(fnmatch.fnmatch(str(f.relative_to(source)), p) for p in include)]
    if not files:
        raise PullError(f"{source}: nothing to copy" + (f" matching {', '.join(include)}" if include else ""))
    total = sum(f.stat().st_size for f in files)
    copied = done = 0
    for file in files:
        relative = file.name if source.is_file() else file.relative_to(source)
        def report(n: int, before: int = done) -> None:
            if progress:
                progress(before + n, total)

        moved = resumable_copy(file, target_dir / relative, report)
        copied += moved
        done += file.stat().st_size
    return (target_dir / source.name if source.is_file() else target_dir), total, copied


def resumable_copy(source: Path, target: Path, progress: Callable[[int], None] | None = None) -> int:
    """Copy through `target.part`, continuing an interrupted copy when its bytes still match the source's;
    returns the bytes copied now. The finished file appears only whole (rename)."""
    size = source.stat().st_size
    if target.is_file() and target.stat().st_size == size and same_tail(source, target, size):
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    start = part.stat().st_size if part.is_file() else 0
    if start > size or (start and not same_tail(source, part, start)):
        start = 0  # a stale or foreign part: start over
    with open(source, "rb") as reader, open(part, "r+b" if start else "wb") as writer:
        reader.seek(start)
        writer.seek(start)
        writer.truncate()
        position = start
        while chunk := reader.read(CHUNK):
            writer.write(chunk)
            position += len(chunk)
            if progress:
                progress(position)
        writer.flush()
        os.fsync(writer.fileno())
    os.replace(part, target)
    shutil.copystat(source, target)
    return size - start


def same_tail(source: Path, other: Path, length: int, window: int = 2**20) -> bool:
    """Do the last `window` bytes before `length` agree? Cheap evidence that a part is this file's prefix."""
    begin = max(0, length - window)
    with open(source, "rb") as a, open(other, "rb") as b:
        a.seek(begin)
        b.seek(begin)
        return a.read(length - begin) == b.read(length - begin)


# -- the hub -------------------------------------------------------------------------------------------------------
def download(repo: str, revision: str | None, include: list[str] | None, gguf: str | None) -> tuple[Path, int, int]:
    """huggingface_hub's snapshot download: its cache, its resume, its token ($HF_TOKEN or `hf auth login`)."""
    from huggingface_hub import HfApi, snapshot_download

    patterns = list(include or [])
    try:
        if gguf:
            info = HfApi().model_info(repo, revision=revision, files_metadata=False)
            names = [s.rfilename for s in info.siblings or []]
            patterns += pick_gguf(names, gguf, repo)
        folder = Path(snapshot_download(repo, revision=revision, allow_patterns=patterns or None))
    except PullError:
        raise
    except Exception as exc:  # noqa: BLE001 - every hub failure becomes one clear message
        raise hub_error(repo, exc) from None
    total = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    return folder, total, total


def hub_error(repo: str, exc: Exception) -> PullError:
    kind = type(exc).__name__
    if kind == "GatedRepoError":
        return PullError(f"{repo} is gated: accept its licence on the model's hub page while logged in, then set "
                         "HF_TOKEN to a token of that account (or run `hf auth login`)")
    if kind == "RepositoryNotFoundError":
        return PullError(f"{repo}: no such repository, or it is private (check the id; for a private one set HF_TOKEN)")
    if kind == "RevisionNotFoundError":
        return PullError(f"{repo}: no such revision")
    if kind in ("LocalEntryNotFoundError", "ConnectError", "ConnectionError", "OfflineModeIsEnabled"):
        return PullError(f"{repo}: the hub cannot be reached (offline?); copy the files here and `gemfuse pull` "
                         "the folder instead")
    return PullError(f"{repo}: download failed: {kind}: {exc}")


# -- the config entry ----------------------------------------------------------------------------------------------
def check_name_free(config_file: Path, name: str, force: bool) -> None:
    from ..models.builtin import builtin_specs

    if name in builtin_specs():
        raise SettingError("name", name, "a built-in model's name; choose another")
    if not force and name in read_document(config_file).get("models", {}):
        raise SettingError("name", name, f"models.{name} exists already in {config_file}; choose another name, or "
                           "replace it (force; --force on the command line)")


def read_document(config_file: Path):
    import tomlkit

    if not config_file.is_file():
        return tomlkit.document()
    try:
        return tomlkit.parse(config_file.read_text(encoding="utf-8"))
    except Exception as exc:  # noqa: BLE001 - tomlkit's parse errors have no common base worth naming
        raise ConfigError(f"{config_file}: not valid TOML: {exc}") from None


def register(config_file: Path, name: str, entry: dict, section: str = "models") -> None:
    """Add (or replace) `[models.NAME]` (or `[presets.NAME]`), keeping the rest of the file (comments, order) as
    the user wrote it."""
    import tomlkit

    document = read_document(config_file)
    if section not in document:
        document[section] = tomlkit.table(is_super_table=True)
    table = tomlkit.table()
    table.update(entry)
    document[section][name] = table
    write_file(config_file, tomlkit.dumps(document))
