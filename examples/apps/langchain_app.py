"""LangChain's ChatOpenAI against `gemfuse serve`: bind_tools and with_structured_output."""

import os

from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

llm = ChatOpenAI(base_url=os.environ.get("GEMFUSE_URL", "http://127.0.0.1:8000/v1"), api_key="unused",
                 model=os.environ.get("GEMFUSE_MODEL", "smollm2-135m"), temperature=0, max_tokens=120)


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


message = llm.bind_tools([get_weather], tool_choice="get_weather").invoke("What is the weather in Paris?")
print("tool calls:", message.tool_calls)


class Fruit(BaseModel):
    name: str
    colour: str


print("structured:", llm.with_structured_output(Fruit).invoke("Name a yellow fruit."))
