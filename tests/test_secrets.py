"""An API key never shows up in logs, exception texts, reprs or tracebacks, even when the provider echoes it."""

import logging
import traceback

import pytest

from gemfuse.errors import AuthError
from gemfuse.messages import Message
from gemfuse.models.openai import OpenAIModel, OpenAISpec
from gemfuse.registry import Registry

SECRET = "sk-test-7f3a9c1e5b2d4f6a8c0e"


async def test_key_is_never_exposed(upstream, monkeypatch, caplog, isolated_config):
    monkeypatch.setenv("GEMFUSE_TEST_KEY", SECRET)
    caplog.set_level(logging.DEBUG)  # httpx and httpcore log requests at DEBUG
    isolated_config.write_text(f'[models.remote]\nbackend = "openai"\nbase_url = "{upstream[0]}"\n'
                               'model = "auth"\napi_key_env = "GEMFUSE_TEST_KEY"\n')
    registry = Registry.load()
    model = registry.get("remote")
    with pytest.raises(AuthError) as info:
        await model.generate([Message.user("hi")])
    error = info.value
    texts = [str(error), repr(error), error.provider_message or "", repr(model), repr(model.spec),
             str(model.spec.model_dump()), "".join(traceback.format_exception(error)), caplog.text]
    for text in texts:
        assert SECRET not in text
    assert "Incorrect API key provided: ***" in str(error), "the provider's message survives, scrubbed"
    with pytest.raises(AuthError):
        async for _ in model.stream([Message.user("hi")]):
            pass
    assert SECRET not in caplog.text
    await registry.aclose()


async def test_ok_calls_log_no_key(upstream, monkeypatch, caplog):
    monkeypatch.setenv("GEMFUSE_TEST_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    model = OpenAIModel("m", OpenAISpec(base_url=upstream[0], model="ok", api_key_env="GEMFUSE_TEST_KEY"))
    completion = await model.generate([Message.user("hi")])
    assert completion.text == "echo: hi"
    assert "POST" in caplog.text or "chat/completions" in caplog.text, "logging was really captured"
    assert SECRET not in caplog.text and SECRET not in repr(completion)
