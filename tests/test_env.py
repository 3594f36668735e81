"""`gemfuse env`: what a bug report needs, with no model loaded (it runs in the fast lane)."""

import json

import pytest
from typer.testing import CliRunner


@pytest.fixture(scope="module", autouse=True)
def libraries_imported():
    """Imported before the fast lane's guard: importing httpx's transport asks ldconfig where libpthread is."""
    from gemfuse._torchvision import import_transformers

    import_transformers()
    import httpx  # noqa: F401


def test_env_reports_versions_device_patches_and_paths(isolated_config):
    from gemfuse.cli import app

    result = CliRunner().invoke(app, ["env", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    import importlib.metadata

    assert report["gemfuse"] and report["python"].count(".") == 2
    assert report["packages"]["transformers"] == importlib.metadata.version("transformers")
    assert report["packages"]["torch"] == importlib.metadata.version("torch")
    assert isinstance(report["device"]["cuda"], bool) and isinstance(report["device"]["cpu_fast_bf16"], bool)
    assert "AVX" in report["llama_cpp"]["system_info"] or "CPU" in report["llama_cpp"]["system_info"]
    checked = {(p["patch"], p["target"].rsplit(".", 1)[-1]): p for p in report["patches"]}
    assert {p for p, _ in checked} == {"lean_norms", "grouped_attention", "row_attention", "lora_matmuls", "frozen_head_loss"}
    assert {t for p, t in checked if p == "lean_norms"} == {"Gemma3RMSNorm", "Gemma3nRMSNorm", "Gemma4RMSNorm"}
    assert all(p["on"] for p in checked.values()), report["patches"]  # the locked libraries fit every patch
    assert report["paths"]["config"] == str(isolated_config)

    text = CliRunner().invoke(app, ["env"])
    assert text.exit_code == 0 and "training patches" in text.stdout and "grouped_attention" in text.stdout
