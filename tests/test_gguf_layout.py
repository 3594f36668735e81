"""A GGUF's header read by skipping its arrays gives what gguf's own reader gives: the scalar metadata and every
tensor's type, shape and place in the file (the bytes there are the tensor written)."""

import numpy as np
import pytest

from gemfuse.gguf_layout import read_layout


def write_gguf(path, tensors, alignment=None, architecture="gemma3"):
    import gguf

    writer = gguf.GGUFWriter(str(path), architecture)
    if alignment:
        writer.add_custom_alignment(alignment)
    writer.add_block_count(2)
    writer.add_string("general.name", "tiny")
    writer.add_float32("tiny.scale", 0.5)
    writer.add_bool("tiny.flag", True)
    writer.add_array("tokenizer.ggml.tokens", [f"piece-{i}" * (i % 5) for i in range(3000)])  # strings of any length
    writer.add_array("tokenizer.ggml.scores", [float(i) for i in range(3000)])
    writer.add_array("tiny.nested", [[1, 2], [3]])
    for name, array in tensors.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.mark.parametrize("alignment", [None, 64])
def test_the_layout_agrees_with_ggufs_reader_and_points_at_the_tensors(tmp_path, alignment):
    import gguf

    rng = np.random.default_rng(0)
    tensors = {"blk.0.attn_q.weight": rng.standard_normal((6, 4)).astype(np.float16),
               "blk.0.attn_norm.weight": rng.standard_normal(5).astype(np.float32),
               "blk.1.ffn_up.weight": rng.standard_normal((3, 7)).astype(np.float16)}
    path = tmp_path / "tiny.gguf"
    write_gguf(path, tensors, alignment)

    layout = read_layout(path)
    reader = gguf.GGUFReader(path)
    assert layout.metadata["general.architecture"] == "gemma3" and layout.metadata["gemma3.block_count"] == 2
    assert layout.metadata["general.name"] == "tiny" and layout.metadata["tiny.scale"] == 0.5
    assert layout.metadata["tiny.flag"] is True and "tokenizer.ggml.tokens" not in layout.metadata  # arrays skipped
    assert {t.name for t in reader.tensors} == set(layout.tensors) == set(tensors)
    for tensor in reader.tensors:
        place = layout.tensors[tensor.name]
        assert place.ggml_type == int(tensor.tensor_type) and place.offset == tensor.data_offset
        assert place.shape == tensors[tensor.name].shape
        stored = np.memmap(path, dtype=place.dtype, mode="r", offset=place.offset, shape=place.shape)
        assert np.array_equal(stored, tensors[tensor.name])


def test_a_file_that_is_not_gguf_is_refused(tmp_path):
    path = tmp_path / "not.gguf"
    path.write_bytes(b"GGML" + bytes(64))
    with pytest.raises(ValueError, match="not a GGUF file"):
        read_layout(path)
