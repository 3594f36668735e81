"""Several text requests to one transformers model decoded as one left-padded batch by `generate()`.

Each row keeps its own stop sequences, answer length and consumer: a per-row stopping criterion ends a row that
met a stop sequence, reached its own `max_tokens` or lost its consumer, while the others go on; each row's
tokens are decoded into text as they come and streamed to its own consumer. At temperature 0 a row's answer
equals the one the request gets alone (the attention mask hides the padding; checked in the tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .base import GenerateOptions, StreamChunk, Usage
from .batcher import Call
from .local import Cancelled, StopFilter
from .logprobs import answer_logprobs


@dataclass(eq=False)
class Row:
    call: Call
    options: GenerateOptions
    emit: Any
    stops: StopFilter
    ids: list[int] = field(default_factory=list)
    generated: int = 0  # tokens sampled, the end-of-turn one included (as a request alone counts them)
    text: Any = None  # a TextStreamer of this row alone: its pieces are those the request gets alone
    emitted: list[str] = field(default_factory=list)
    ended: bool = False  # end of turn, a stop sequence, its length, or its consumer left

    def send(self, text: str) -> None:
        if not text or self.call.cancelled.is_set():
            return
        self.emitted.append(text)
        try:
            self.emit(StreamChunk(text=text))
        except Cancelled:
            self.call.cancelled.set()


def batch_key(messages, options: GenerateOptions):
    """Requests that may share a batch: text only, no seed (a seeded request is reproduced alone), no tools for
    the model's own template (read whole, with its call tokens), and the same sampling settings (generate() takes
    one set per batch)."""
    if options.seed is not None or options.tools is not None or any(part.type != "text" for m in messages
                                                                       for part in m.parts):
        return None  # a seeded request, tools for the model's own template, or media: alone
    sampling = options.temperature is None or options.temperature > 0
    return ("sample", options.temperature or 1.0, options.top_p or 1.0) if sampling else ("greedy",)


def produce_batch(model, calls: list[Call], eos: list[int]) -> None:
    """Run the calls (payload: messages, options, emit) as one padded generate() on `model` (a TransformersModel)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList, TextStreamer
    from transformers.generation.streamers import BaseStreamer


    hf_model, processor, device = model.load()
    tokenizer = getattr(processor, "tokenizer", processor)
    rows = [Row(call, call.payload[1], call.payload[2], StopFilter([*call.payload[1].stop, *model.spec.stop]))
            for call in calls]
    inputs = model._batch_inputs([call.payload[0] for call in calls], processor, device)
    prompt_tokens = [int(n) for n in inputs["attention_mask"].sum(dim=1)]
    width = int(inputs["input_ids"].shape[1])
    ends = set(eos)

    class RowText(TextStreamer):
        def __init__(self, row: Row):
            super().__init__(tokenizer, skip_prompt=False, skip_special_tokens=True)
            self.row = row

        def on_finalized_text(self, text: str, stream_end: bool = False):
            self.row.send(self.row.stops.feed(text) + (self.row.stops.flush() if stream_end else ""))

    for row in rows:
        row.text = RowText(row)

    class Streamer(BaseStreamer):
        prompt_seen = False

        def put(self, value):
            if not self.prompt_seen:  # the first call hands over the prompts
                self.prompt_seen = True
                return
            for row, token in zip(rows, value.view(-1).tolist(), strict=True):
                if row.ended:
                    continue
                row.generated += 1
                if token in ends:
                    row.ended = True
                    continue
                row.ids.append(token)
                row.text.put(torch.tensor([token]))
                if row.stops.stopped or len(row.ids) >= row.options.max_tokens or row.call.cancelled.is_set():
                    row.ended = True

        def end(self):
            pass

    class RowsEnded(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.tensor([row.ended for row in rows], dtype=torch.bool, device=input_ids.device)

    first = rows[0].options
    sampling = batch_key([], first) != ("greedy",)
    logprobs = any(row.options.logprobs for row in rows)
    kwargs: dict[str, Any] = dict(max_new_tokens=max(row.options.max_tokens for row in rows), do_sample=sampling,
                                  streamer=Streamer(), eos_token_id=eos or None,
                                  stopping_criteria=StoppingCriteriaList([RowsEnded()]),
                                  pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None
                                  else (eos[0] if eos else None))
    if sampling:
        kwargs.update(temperature=first.temperature or 1.0, top_p=first.top_p or 1.0)
    if any(row.options.json_schema is not None for row in rows):  # each row under its own grammar, or free
        from .grammar import GrammarProcessor

        kwargs["logits_processor"] = [GrammarProcessor(tokenizer, [row.options.json_schema for row in rows], eos)]
    if logprobs:
        kwargs.update(output_logits=True, return_dict_in_generate=True)
    with torch.inference_mode():
        output = hf_model.generate(**inputs, **kwargs)
    for index, row in enumerate(rows):
        if row.call.cancelled.is_set():
            row.call.error = Cancelled()
            continue
        row.text.end()
        length = len(row.ids) >= row.options.max_tokens and not row.stops.stopped
        tokens = None
        if row.options.logprobs:
            tokens = answer_logprobs(output, width, tokenizer, row.options.top_logprobs or 0, "".join(row.emitted),
                                     row=index)
        try:
            row.emit(StreamChunk(finish_reason="length" if length else "stop",
                                 usage=Usage(prompt_tokens[index], row.generated), logprobs=tokens))
        except Cancelled:
            row.call.error = Cancelled()
