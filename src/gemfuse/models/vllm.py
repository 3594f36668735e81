"""A vLLM server (`vllm serve`, one or several replicas behind a load balancer): OpenAI's API, so the OpenAI
backend with vLLM's defaults, kept under its own name so a config says what runs behind it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .openai import OpenAIModel, OpenAISpec


class VLLMSpec(OpenAISpec):
    backend: Literal["vllm"] = "vllm"  # type: ignore[assignment]
    base_url: str = Field("http://127.0.0.1:8000/v1", description="the vLLM server (vllm serve's default port)")
    model: str = Field(description="the served model name (--served-model-name, or a --lora-modules name)")
    modalities: list[Literal["text", "image", "audio"]] = ["text", "image"]


class VLLMModel(OpenAIModel):
    backend = "vllm"
    Spec = VLLMSpec
