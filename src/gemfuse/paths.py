"""Where gemfuse keeps user state: the config file and the cache (both overridable by environment)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import platformdirs

CONFIG_ENV = "GEMFUSE_CONFIG"
CACHE_ENV = "GEMFUSE_CACHE_DIR"


def config_path() -> Path:
    """$GEMFUSE_CONFIG, else config.toml in the platform's user config folder."""
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV]).expanduser()
    return Path(platformdirs.user_config_dir("gemfuse")) / "config.toml"


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(platformdirs.user_cache_dir("gemfuse"))


def output_path(path: str | Path, setting: str = "out", *, folder: bool = False) -> Path:
    """`path`, ready to be written: its missing parent folders made (and the folder itself when `folder`).
    A parent that is a file or not writable is one line naming the setting, never a library's message."""
    from .errors import SettingError

    path = Path(path).expanduser()
    if folder and path.exists() and not path.is_dir():
        raise SettingError(setting, path, "a file is there; give a folder")
    make = path if folder else path.parent
    try:
        make.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in [make, *make.parents] if p.exists() and not p.is_dir()), make)
        raise SettingError(setting, path, f"cannot make folder {make}: {blocker} is a file") from None
    except PermissionError:
        raise SettingError(setting, path, f"no permission to create folder {make}") from None
    except OSError as exc:
        raise SettingError(setting, path, f"cannot create folder {make}: {exc.strerror or exc}") from None
    if not folder and path.is_dir():
        raise SettingError(setting, path, "a folder is there; give a file name")
    if not os.access(make, os.W_OK):
        raise SettingError(setting, path, f"folder {make} is not writable")
    return path


@contextlib.contextmanager
def published_file(final: Path) -> Iterator[Path]:
    """Write a file whole or not at all: write the staging path this yields (beside `final`, this process's
    own); when the block ends without error it replaces `final` in one rename, so a reader sees the old file or
    the new one, never half of one. On an error the staging file is removed."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    try:
        yield staging
        os.replace(staging, final)
    finally:
        staging.unlink(missing_ok=True)


def write_file(final: Path, data: str | bytes) -> None:
    """`data` as the whole of `final`, published at once (text as UTF-8)."""
    with published_file(final) as staging:
        if isinstance(data, bytes):
            staging.write_bytes(data)
        else:
            staging.write_text(data, encoding="utf-8")


@contextlib.contextmanager
def published_folder(final: Path, *, replace: bool = True) -> Iterator[Path]:
    """Write a folder whole or not at all: fill the staging folder this yields (beside `final`, same disk); when
    the block ends without error it is renamed onto `final`, so a reader sees a whole folder or none. An older
    `final` is replaced with no moment where neither is whole; with `replace=False`, a finished `final` that a
    concurrent writer published first is kept. On an error the staging folder is removed."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        yield staging
        if not final.exists():
            try:
                os.rename(staging, final)
            except OSError:
                if replace or not final.exists():  # not a concurrent winner: a real failure
                    raise
        elif replace:
            old = final.with_name(f".old-{final.name}-{os.getpid()}")
            os.rename(final, old)
            os.rename(staging, final)
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def made_once(final: Path) -> Iterator[None]:
    """Held while `final` is made: another process about to make the same file waits here, then finds it made,
    rather than making it again beside (a conversion holds the whole model in memory; two at once can double a
    machine's peak). A lock file beside `final`, released when its holder exits however it exits."""
    import fcntl

    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.with_name(f".{final.name}.lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
