"""Every worked example runs top to bottom as a notebook (nbclient, a real kernel), in its quick setting, shows
its plots, and its paired .ipynb is what jupytext makes of the .py it is kept as."""

from pathlib import Path

import pytest

pytestmark = pytest.mark.heavy  # real models or processes: the full suite only

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NOTEBOOKS = sorted(p for p in EXAMPLES.glob("*.py") if p.read_text().startswith("# %%"))
PLOTTING = {"fine_tune_text", "fine_tune_images", "fine_tune_audio", "evaluate_fusion", "plan_and_quantize",
            "distil_a_fusion"}


def test_every_worked_example_is_here():
    assert {p.stem for p in NOTEBOOKS} == PLOTTING | {"serve_and_fuse", "distil_tool_calls"}


@pytest.mark.slow
@pytest.mark.parametrize("script", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(script, tmp_path, monkeypatch):
    import jupytext
    import nbformat
    from nbclient import NotebookClient

    notebook = jupytext.read(script)
    paired = nbformat.read(script.with_suffix(".ipynb"), as_version=4)
    assert [c.source for c in paired.cells] == [c.source for c in notebook.cells], (
        f"{script.with_suffix('.ipynb').name} is stale: jupytext --to ipynb {script.name}")
    monkeypatch.setenv("GEMFUSE_EXAMPLES_QUICK", "1")
    monkeypatch.setenv("GEMFUSE_EXAMPLES_WORK", str(tmp_path))
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(EXAMPLES)}}).execute()  # raises on a failing cell
    images = [o for c in notebook.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    if script.stem in PLOTTING:
        assert images, f"{script.name} showed no plot"
