"""Config-side description of a model: what every backend shares, extended by each backend's own Spec."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Price(BaseModel):
    """US dollars per million tokens."""

    model_config = ConfigDict(extra="forbid")
    input: float = Field(ge=0)
    output: float = Field(ge=0)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1_000_000


class ModelSpec(BaseModel):
    """Fields every backend accepts. A backend subclasses this and adds its own (extra keys are errors)."""

    model_config = ConfigDict(extra="forbid")

    backend: str
    description: str = ""
    price: Price | None = None
    concurrency: int | None = Field(None, ge=1, description="calls in flight at once (local models: their slots)")


# For base (not instruction-tuned) models, whose GGUF carries no chat template: a plain transcript with a short
# preamble and one example exchange, which base models continue far better than bare turns (measured with Gemma
# 3 270M: without them it mostly repeats the question).
PLAIN_CHAT_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}"
    "{% else %}The following is a conversation with a helpful assistant that answers questions correctly and "
    "briefly.{% endif %}\n\nUser: Name a fruit that is yellow.\nAssistant: A banana is yellow.\n"
    "{% for m in messages %}{% if m['role'] == 'user' %}User: {{ m['content'] }}\n"
    "{% elif m['role'] == 'assistant' %}Assistant: {{ m['content'] }}\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}")
PLAIN_CHAT_STOP = ("\nUser:", "\n\n")


LOCAL_SLOTS = 4  # requests a local model decodes together unless its config says otherwise


class LocalSpec(ModelSpec):
    """Fields shared by the in-process backends."""

    concurrency: int | None = Field(LOCAL_SLOTS, ge=1, description="slots: requests decoded together (llama.cpp: "
                                    "continuous batching; transformers: one padded batch of text requests); more "
                                    "wait in the queue")

    path: str  # each backend says what it takes (a GGUF file, a model folder or hub id)
    # A fine-tune's run folder (set by models/finetuned.py, not in config files): the weights it was trained from
    # as its manifest names them, and its base as it runs beside it (same runtime, template and precision).
    finetune_of: str | None = Field(None, exclude=True)
    base: LocalSpec | None = Field(None, exclude=True)
    trained_weights: str | None = None  # the adapter's sha256: a retrained or resumed run is another model
    # Weights on the user's own machine cost nothing per token unless the config says otherwise.
    price: Price | None = Field(default_factory=lambda: Price(input=0, output=0))

    chat_template: str | None = Field(None, description="a Jinja chat template replacing the model's own")
    stop: list[str] = Field(default_factory=list, description="stop sequences always added to a call's own")
