"""Greedy answers of the built-in GGUF models on llama.cpp's server engine (what gemfuse runs) against
llama-cpp-python with the same template, stops and repeat penalty (what it ran before): how many of 20 short
questions get the same 40-token answer, with the built-in repeat penalty and without it.

    python benchmarks/engine_agreement.py
"""

from __future__ import annotations

import asyncio

from gemfuse.files import resolve_path
from gemfuse.messages import Message
from gemfuse.models.base import GenerateOptions
from gemfuse.models.builtin import builtin_specs
from gemfuse.models.llamacpp import LlamaCppModel

QUESTIONS = ["What is the capital of France?", "Name a fruit that is red.", "What is 3 + 4?", "Who wrote Hamlet?",
             "What colour is the sky?", "Translate 'hello' into Spanish.", "Name a planet.", "What do bees make?",
             "How many legs does a spider have?", "What is water made of?", "Name a musical instrument.",
             "What is the opposite of hot?", "What is the largest ocean?", "Say hi.", "What is 10 - 3?",
             "Give a synonym for happy.", "What animal barks?", "What is ice?", "Name a colour.", "What is the sun?"]


def llama_cpp_python(spec):
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    llama = Llama(model_path=str(resolve_path(spec.path)), n_ctx=spec.n_ctx, verbose=False)
    if spec.chat_template:
        token = lambda i: llama.detokenize([i], special=True).decode("utf-8", "replace")  # noqa: E731
        llama.chat_handler = Jinja2ChatFormatter(spec.chat_template, eos_token=token(llama.token_eos()),
                                                 bos_token=token(llama.token_bos()),
                                                 stop_token_ids=[llama.token_eos()]).to_chat_handler()
    return llama


def main() -> None:
    for name, spec in builtin_specs().items():
        if spec.backend != "llamacpp":
            continue
        for penalty in dict.fromkeys([spec.repeat_penalty, None]):
            variant = spec.model_copy(update={"repeat_penalty": penalty})
            ours, before = LlamaCppModel(name, variant), llama_cpp_python(variant)
            same = 0
            for question in QUESTIONS:
                answer = asyncio.run(ours.generate([Message.user(question)],
                                                   GenerateOptions(max_tokens=40, temperature=0))).text
                before.reset()
                reply = before.create_chat_completion([{"role": "user", "content": question}], max_tokens=40,
                                                      temperature=0, repeat_penalty=penalty or 1.0,
                                                      stop=variant.stop or None)
                same += answer.strip() == (reply["choices"][0]["message"]["content"] or "").strip()
            print(f"{name}, repeat penalty {penalty or 'off'}: {same}/{len(QUESTIONS)} greedy answers identical")
            asyncio.run(ours.aclose())


if __name__ == "__main__":
    main()
