"""A third-party backend, installed the way a plugin author ships one (an entry point in `gemfuse.backends`),
is configured, called and served like our own."""

import textwrap

import httpx

from gemfuse import run_sync
from gemfuse.messages import Message
from gemfuse.registry import Registry

PLUGIN = '''
from typing import Literal

from gemfuse.models.base import Model, StreamChunk, Usage
from gemfuse.models.spec import ModelSpec


class ParrotSpec(ModelSpec):
    backend: Literal["parrot"] = "parrot"
    prefix: str = "parrot: "


class ParrotModel(Model):
    backend = "parrot"
    Spec = ParrotSpec

    async def stream(self, messages, options=None):
        yield StreamChunk(text=self.spec.prefix + messages[-1].text)
        yield StreamChunk(finish_reason="stop", usage=Usage(3, 2))
'''


def test_a_backend_from_an_entry_point(tmp_path, monkeypatch, isolated_config):
    import importlib.metadata

    import gemfuse.models.backends as backends

    (tmp_path / "parrot_backend.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    real = importlib.metadata.entry_points

    def entry_points(**query):
        if query.get("group") == backends.ENTRY_POINT_GROUP:
            return [importlib.metadata.EntryPoint("parrot", "parrot_backend:ParrotModel", backends.ENTRY_POINT_GROUP)]
        return real(**query)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    backends.backend_table.cache_clear()
    try:
        isolated_config.write_text('[models.polly]\nbackend = "parrot"\nprefix = "polly says: "\n')
        registry = Registry.load()
        model = registry.get("polly")
        assert model.spec.prefix == "polly says: " and not type(model).fetches_media_urls
        assert run_sync(model.generate([Message.user("hello")])).text == "polly says: hello"
        isolated_config.write_text('[models.polly]\nbackend = "parrot"\nprefx = "typo"\n')
        from gemfuse.errors import ConfigError

        try:
            Registry.load()
            raise AssertionError("a misspelt plugin field must be refused")
        except ConfigError as exc:
            assert "prefx: unknown key (did you mean prefix?)" in str(exc)
        isolated_config.write_text('[models.polly]\nbackend = "parrot"\n')

        async def served() -> dict:
            from gemfuse.serve.app import create_app

            transport = httpx.ASGITransport(app=create_app(Registry.load()))
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
                reply = await client.post("/v1/chat/completions", json={
                    "model": "polly", "messages": [{"role": "user", "content": "cracker?"}]})
                assert reply.status_code == 200, reply.text
                return reply.json()

        body = run_sync(served())
        assert body["choices"][0]["message"]["content"] == "parrot: cracker?" and body["usage"]["total_tokens"] == 5
    finally:
        backends.backend_table.cache_clear()
