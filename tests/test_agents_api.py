"""The Responses API, embeddings and completions through the official openai client, and the OpenAI Agents SDK
running a tool-calling agent against the server (a local model and a fusion, over both APIs)."""

import base64
import json

import numpy as np
import openai
import pytest

from gemfuse.registry import Registry
from gemfuse.serve.app import create_app
from gemfuse.testing.upstream import serve_in_thread

pytestmark = pytest.mark.heavy

WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]}},
                          "required": ["city"], "additionalProperties": False}}
# paraphrase pairs, and the same first sentences against unrelated ones
PAIRS = [("A man is playing a guitar.", "Someone plays the guitar.", "Interest rates rose again this quarter."),
         ("The cat sleeps on the sofa.", "A cat is napping on the couch.", "The train to Berlin leaves at noon."),
         ("How do I reset my password?", "I forgot my password; how can I change it?", "Bake the bread for an hour."),
         ("The meeting was moved to Friday.", "We rescheduled the meeting for Friday.", "Penguins live in Antarctica."),
         ("She bought a new car yesterday.", "Yesterday she purchased a new automobile.", "Water boils at 100 C.")]


@pytest.fixture(scope="module")
def base_url(tmp_path_factory, upstream):
    config = tmp_path_factory.mktemp("api") / "config.toml"
    config.write_text(f"""
[models.remote]
backend = "openai"
base_url = "{upstream[0]}"
model = "tools"

[presets.agents]
mode = "vote"
pool = ["remote", "smollm2-135m"]
""")
    with serve_in_thread(create_app(Registry.load(config))) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url):
    return openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)


@pytest.mark.parametrize("model", ["smollm2-135m", "remote", "fusion/agents"])
def test_responses_with_text_and_with_a_function_tool(client, model):
    text = client.responses.create(model=model, input="Say hello.", instructions="Be brief.", max_output_tokens=200,
                                   temperature=0)
    assert text.object == "response" and text.output_text and text.output[0].type == "message"
    assert text.usage.output_tokens > 0
    called = client.responses.create(model=model, input=[{"role": "user", "content": "Weather in Rome?"}],
                                     tools=[WEATHER], tool_choice="required", temperature=0)
    (call,) = [item for item in called.output if item.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments)["city"] in ("Paris", "Rome") and call.call_id
    answered = client.responses.create(model=model, tools=[WEATHER], tool_choice="none", max_output_tokens=60,
                                       input=[{"role": "user", "content": "Weather in Rome?"},
                                              call.model_dump(exclude_none=True),
                                              {"type": "function_call_output", "call_id": call.call_id,
                                               "output": "sunny"}])
    assert answered.output[0].type == "message" and answered.output_text
    if model == "remote":
        assert "sunny" in answered.output_text


@pytest.mark.parametrize("model", ["smollm2-135m", "remote"])
def test_responses_parse_a_pydantic_text_format(client, model):
    from pydantic import BaseModel

    class Colour(BaseModel):
        name: str
        warm: bool

    parsed = client.responses.parse(model=model, input="Name a colour.", text_format=Colour, temperature=0,
                                    max_output_tokens=60)
    assert isinstance(parsed.output_parsed, Colour)


def test_responses_stream_with_the_sdk_event_types(client):
    with client.responses.stream(model="smollm2-135m", input="Say hi.", max_output_tokens=200, temperature=0) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds and final.output_text
    with client.responses.stream(model="remote", input="Weather?", tools=[WEATHER], tool_choice="required") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.done" in kinds and final.output[0].type == "function_call"
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="remote", input="x", previous_response_id="resp_earlier")
    assert caught.value.body["param"] == "previous_response_id"


def test_embeddings_float_and_base64_agree_and_paraphrases_are_closer(client):
    texts = [t for pair in PAIRS for t in pair]
    floats = client.embeddings.create(model="embed", input=texts)
    packed = client.embeddings.create(model="wordllama-256", input=texts, encoding_format="base64")
    vectors = np.array([d.embedding for d in floats.data])
    decoded = np.array([np.frombuffer(base64.b64decode(d.embedding), dtype="<f4") for d in packed.data])
    assert vectors.shape == (15, 256) and np.allclose(vectors, decoded, atol=1e-6)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4) and floats.usage.prompt_tokens > 0
    close = [float(vectors[3 * i] @ vectors[3 * i + 1]) for i in range(len(PAIRS))]
    apart = [float(vectors[3 * i] @ vectors[3 * i + 2]) for i in range(len(PAIRS))]
    print(f"paraphrase cosine {np.mean(close):.2f}, unrelated {np.mean(apart):.2f}")
    assert all(c > a for c, a in zip(close, apart, strict=True))
    short = client.embeddings.create(model="embed", input="one text", dimensions=64)
    assert len(short.data[0].embedding) == 64
    gguf = client.embeddings.create(model="smollm2-135m", input=["hello", "world"])
    assert len(gguf.data) == 2 and len(gguf.data[0].embedding) == 576
    remote = client.embeddings.create(model="remote", input=["hello", "world", "hello"])
    assert remote.data[0].embedding == remote.data[2].embedding != remote.data[1].embedding
    assert len(remote.data[0].embedding) == 8 and remote.usage.prompt_tokens == 3
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="embed", input=[[1, 2, 3]])


def test_completions_whole_and_streamed(client):
    whole = client.completions.create(model="smollm2-135m", prompt="Name a colour.", max_tokens=8, temperature=0)
    assert whole.object == "text_completion" and whole.choices[0].text and whole.usage.completion_tokens <= 8
    pieces = [c.choices[0].text for c in client.completions.create(model="smollm2-135m", prompt="Name a colour.",
                                                                    max_tokens=8, temperature=0, stream=True)
              if c.choices]
    assert "".join(pieces) == whole.choices[0].text


@pytest.mark.parametrize("api", ["responses", "chat"])
@pytest.mark.parametrize("model", ["smollm2-135m", "fusion/agents"])
async def test_the_agents_sdk_calls_a_function_tool(base_url, api, model):
    from agents import (
        Agent,
        ModelSettings,
        OpenAIChatCompletionsModel,
        OpenAIResponsesModel,
        Runner,
        function_tool,
        set_tracing_disabled,
    )

    set_tracing_disabled(True)  # no traces sent anywhere
    seen: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        seen.append(city)
        return f"sunny in {city}"

    client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0)
    kind = OpenAIResponsesModel if api == "responses" else OpenAIChatCompletionsModel
    agent = Agent(name="weather", instructions="Answer with the weather tool.", tools=[get_weather],
                  model=kind(model=model, openai_client=client),
                  model_settings=ModelSettings(tool_choice="required", temperature=0, max_tokens=400))
    result = await Runner.run(agent, "What is the weather in Paris?", max_turns=4)
    assert seen, "the tool was really called"
    assert isinstance(result.final_output, str) and result.final_output
