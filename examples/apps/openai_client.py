"""The official openai client against `gemfuse serve`: a pydantic answer, a tool call and its round trip."""

import json
import os

from openai import OpenAI
from pydantic import BaseModel

client = OpenAI(base_url=os.environ.get("GEMFUSE_URL", "http://127.0.0.1:8000/v1"), api_key="unused")
MODEL = os.environ.get("GEMFUSE_MODEL", "smollm2-135m")


class City(BaseModel):
    name: str
    country: str


answer = client.chat.completions.parse(model=MODEL, messages=[{"role": "user", "content": "Name a city in Italy."}],
                                       response_format=City, temperature=0)
print("parsed:", answer.choices[0].message.parsed)

weather = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                   "additionalProperties": False}}}
question = {"role": "user", "content": "What is the weather in Rome?"}
first = client.chat.completions.create(model=MODEL, messages=[question], tools=[weather], tool_choice="required")
call = first.choices[0].message.tool_calls[0]
print("call:", call.function.name, json.loads(call.function.arguments))
result = {"role": "tool", "tool_call_id": call.id, "content": "22 degrees and sunny"}
final = client.chat.completions.create(model=MODEL, messages=[question, first.choices[0].message, result],
                                       tools=[weather], tool_choice="none", max_tokens=60)
print("answer:", final.choices[0].message.content)
