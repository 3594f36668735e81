"""llama.cpp's own tools for GGUF files: `convert_hf_to_gguf.py` with its `gguf-py`, taken from the source
distribution of the installed llama-cpp-python (the llama.cpp it was built from, so converter and runtime
agree; `make setup` unpacks them into the virtual environment, `$GEMFUSE_LLAMA_CPP` may name a llama.cpp
checkout instead), and its quantiser through llama-cpp-python's `llama_model_quantize`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

from .devices import cpu_threads
from .errors import GemfuseError, SettingError
from .paths import published_file, published_folder

LLAMA_CPP_ENV = "GEMFUSE_LLAMA_CPP"


class ExportError(GemfuseError):
    """A conversion or export step failed; the message says which and why."""


def llama_cpp_tools(fetch: bool = True) -> Path:
    """A folder with llama.cpp's convert_hf_to_gguf.py and gguf-py: $GEMFUSE_LLAMA_CPP, or the one unpacked from
    the installed llama-cpp-python's source distribution (fetched from the package index on first use)."""
    if os.environ.get(LLAMA_CPP_ENV):
        folder = Path(os.environ[LLAMA_CPP_ENV]).expanduser()
        if not (folder / "convert_hf_to_gguf.py").is_file():
            raise ExportError(f"${LLAMA_CPP_ENV}={folder}: no convert_hf_to_gguf.py there")
        return folder
    try:
        release = version("llama_cpp_python")
    except Exception:
        raise ExportError("GGUF export needs llama-cpp-python: pip install 'gemfuse[llamacpp]'") from None
    folder = Path(sys.prefix) / "share" / "gemfuse" / f"llama.cpp-{release}"
    if (folder / "convert_hf_to_gguf.py").is_file() and (folder / "conversion").is_dir():
        return folder
    shutil.rmtree(folder, ignore_errors=True)  # an unpacking from an older gemfuse that missed a part
    if not fetch:
        raise ExportError(f"llama.cpp's converter is not unpacked at {folder}")
    with tempfile.TemporaryDirectory() as download:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                               f"llama-cpp-python=={release}", "-d", download], capture_output=True, text=True)
        archives = list(Path(download).glob("*.tar.gz"))
        if done.returncode or not archives:
            raise ExportError(f"could not fetch llama-cpp-python {release}'s sources for its GGUF converter "
                              f"(set ${LLAMA_CPP_ENV} to a llama.cpp checkout instead): {done.stderr[-500:]}")
        prefix = f"{archives[0].name.removesuffix('.tar.gz')}/vendor/llama.cpp/"
        with published_folder(folder, replace=False) as staging, tarfile.open(archives[0]) as archive:
            members = [m for m in archive.getmembers() if m.name.startswith(prefix) and m.isfile() and (
                m.name == prefix + "convert_hf_to_gguf.py" or m.name.startswith((prefix + "gguf-py/",
                                                                                  prefix + "conversion/")))]
            for member in members:
                member.name = member.name[len(prefix):]
                archive.extract(member, staging, filter="data")
    return folder


def convert_to_gguf(folder: Path, out: Path, outtype: str = "f16") -> Path:
    """A transformers folder to one GGUF file at 16 bits, by llama.cpp's converter (in a subprocess)."""
    tools = llama_cpp_tools()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tools / "gguf-py"), os.environ.get("PYTHONPATH", "")])}
    # The converter imports transformers; with PyPI's CUDA torchvision beside CPU torch that needs our shim first.
    launcher = ("import runpy, sys; from gemfuse._torchvision import make_torchvision_importable; "
                "make_torchvision_importable(); sys.argv = sys.argv[1:]; "
                "sys.path.insert(0, sys.argv[0].rpartition('/')[0]); runpy.run_path(sys.argv[0], run_name='__main__')")
    with published_file(out) as staging:
        done = subprocess.run([sys.executable, "-c", launcher, str(tools / "convert_hf_to_gguf.py"), str(folder),
                               "--outfile", str(staging), "--outtype", outtype], capture_output=True, text=True,
                              env=env)
        if done.returncode or not staging.is_file():
            raise ExportError(f"llama.cpp's converter failed on {folder}:\n{done.stderr[-2000:]}")
    return out


@contextlib.contextmanager
def native_output_to(file):
    """Send what C code writes to stdout and stderr into `file` for the duration."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(file.fileno(), 1)
        os.dup2(file.fileno(), 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def open_gguf(path: Path, **settings: Any):
    """A llama-cpp-python model on `path` for gemfuse's own checks and measures (the backend has its own
    loader): quiet, its loader notes sent where the command line sends library chatter."""
    from llama_cpp import Llama

    from .quiet import quiet_llama_cpp

    quiet_llama_cpp()
    threads = cpu_threads()  # the process's thread budget, as the backend keeps to it
    settings = {"n_threads": threads, "n_threads_batch": threads, **settings}
    return Llama(model_path=str(path), verbose=False, **settings)


def quant_types() -> list[str]:
    import llama_cpp

    return sorted(n.removeprefix("LLAMA_FTYPE_MOSTLY_") for n in dir(llama_cpp) if n.startswith("LLAMA_FTYPE_MOSTLY_"))


def quantize_gguf(source: Path, target: Path, quant: str, allow_requantize: bool = False) -> None:
    import llama_cpp

    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant.upper()}", None)
    if ftype is None:
        raise SettingError("quant", quant, f"unknown; llama.cpp knows {', '.join(quant_types())}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = cpu_threads()
    params.allow_requantize = allow_requantize
    with published_file(target) as staging, tempfile.TemporaryFile() as log:
        with native_output_to(log):  # llama.cpp prints a line per tensor
            failed = llama_cpp.llama_model_quantize(str(source).encode(), str(staging).encode(), params) != 0
        if failed:
            log.seek(0)
            raise ExportError(f"llama.cpp could not quantise {source} to {quant}:\n"
                              f"{log.read().decode(errors='replace')[-1500:]}")


if __name__ == "__main__":  # `python -m gemfuse.gguf_tools`, run by `make setup`: unpack the converter
    print(llama_cpp_tools())
