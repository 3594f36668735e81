"""The OpenAI Agents SDK against `gemfuse serve`: an agent with a function tool, over the Responses API."""

import asyncio
import os

from agents import Agent, ModelSettings, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
from openai import AsyncOpenAI

set_tracing_disabled(True)  # the SDK would send its traces to OpenAI otherwise
client = AsyncOpenAI(base_url=os.environ.get("GEMFUSE_URL", "http://127.0.0.1:8000/v1"), api_key="unused")


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    print(f"tool called: get_weather({city!r})")
    return f"sunny in {city}"


agent = Agent(name="weather", instructions="Answer with the weather tool.", tools=[get_weather],
              model=OpenAIResponsesModel(model=os.environ.get("GEMFUSE_MODEL", "smollm2-135m"), openai_client=client),
              model_settings=ModelSettings(tool_choice="required", max_tokens=400))
result = asyncio.run(Runner.run(agent, "What is the weather in Paris?", max_turns=4))
print("final:", result.final_output)
