import pytest

from gemfuse.config import load_config
from gemfuse.errors import ConfigError, UnknownModelError
from gemfuse.models.openai import OpenAIModel
from gemfuse.registry import Registry

GOOD = """
default_model = "remote"

[models.remote]
backend = "openai"
base_url = "http://127.0.0.1:9/v1"
model = "some/model"
api_key_env = "REMOTE_KEY"
price = { input = 0.5, output = 1.5 }
timeout = { connect = 1, read = 5, total = 10 }
"""


def test_builtins_work_without_a_config_file(isolated_config):
    assert not isolated_config.exists()
    config = load_config()
    assert {"smollm2-135m", "gemma-3-270m", "smollm2-135m-hf", "gemma-3-270m-hf"} <= set(config.specs)
    assert config.default_model == "smollm2-135m"


def test_a_valid_file_adds_models(isolated_config):
    isolated_config.write_text(GOOD)
    registry = Registry.load()
    assert registry.config.default_model == "remote"
    model = registry.get("remote")
    assert isinstance(model, OpenAIModel)
    assert model.spec.price.cost(1_000_000, 2_000_000) == pytest.approx(3.5)
    assert model.spec.timeout.read == 5
    assert registry.get("remote") is model  # one instance per name


@pytest.mark.parametrize("body, message", [
    ('[models.r]\nbackend = "openai"\nbase_ur = "x"\nmodel = "m"',
     r"models\.r\.base_ur: unknown key \(did you mean base_url\?\)"),
    ('[models.r]\nbackend = "openai"\nmodel = "m"', r"models\.r\.base_url: required key is missing"),
    ('[models.r]\nbackend = "ollama"', r"models\.r\.backend: unknown backend 'ollama'; known backends: .*openai"),
    ('[models.r]\nbackend = "llamacpp"\npath = "x.gguf"\nn_ctx = "big"', r"models\.r\.n_ctx: .*integer"),
    ('[models.r]\nbackend = "openai"\nbase_url = "u"\nmodel = "m"\ntimeout = { conect = 3 }',
     r"models\.r\.timeout\.conect: unknown key \(did you mean connect\?\)"),
    ('defalt_model = "x"', r"defalt_model: unknown key \(did you mean default_model\?\)"),
    ('[models.r]\nbackend = "llamacpp"\npath = "x.gguf"\nbase = { path = "y" }',
     r"models\.r\.base: set by gemfuse for a run folder, not in a config"),
    ('default_model = "nope"', r"default_model: unknown model 'nope'"),
    ('[models.r\nbackend=1', r"not valid TOML"),
])
def test_mistakes_name_the_file_and_key(isolated_config, body, message):
    isolated_config.write_text(body)
    with pytest.raises(ConfigError, match=message) as info:
        load_config()
    assert str(isolated_config) in str(info.value)


def test_unknown_model_lists_known_names():
    registry = Registry.load()
    with pytest.raises(UnknownModelError) as info:
        registry.get("smollm-135m")
    text = str(info.value)
    assert "Did you mean smollm2-135m" in text and "gemma-3-270m" in text


def test_explicit_config_path_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_local_models_cost_nothing_unless_priced(isolated_config, tmp_path):
    """A user's own GGUF or transformers folder is free in a fusion's cost; a price in the config still counts."""
    from gemfuse.models.base import Usage

    isolated_config.write_text(f'[models.mine]\nbackend = "llamacpp"\npath = "{tmp_path}/m.gguf"\n'
                               f'[models.folder]\nbackend = "transformers"\npath = "{tmp_path}"\n'
                               f'[models.priced]\nbackend = "llamacpp"\npath = "{tmp_path}/m.gguf"\n'
                               'price = { input = 1.0, output = 2.0 }\n' + GOOD.replace('default_model = "remote"', ""))
    config = load_config()
    assert config.specs["mine"].price.cost(10**6, 10**6) == 0 and config.specs["folder"].price.cost(5, 5) == 0
    assert config.specs["priced"].price.cost(10**6, 0) == pytest.approx(1.0)
    assert config.specs["remote"].price.input == 0.5
    from gemfuse.fusion.engine import FusionRun

    engine = FusionRun.__new__(FusionRun)  # only its pricing is exercised: the rule every fusion's cost goes through
    engine.registry = Registry.load()
    assert engine.price("mine", Usage(10, 10)) == 0 and engine.price("folder", Usage(10, 10)) == 0
    assert engine.price("priced", Usage(10**6, 0)) == pytest.approx(1.0)
