"""The sampling bounds are defined once (gemfuse.models.base) and every door refuses the same values: the Python
options, a fusion preset and its members, the server's request, eval settings and the command line."""

import re

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from gemfuse.cli import app
from gemfuse.commands.options import bounds
from gemfuse.evals.settings import EvalSettings
from gemfuse.fusion.preset import FusionPreset, Member
from gemfuse.models.base import GenerateOptions, MaxTokens, Temperature, TopP
from gemfuse.serve.schemas import ChatRequest

BAD = [("temperature", 2.5), ("temperature", -0.1), ("max_tokens", 0), ("top_p", 0.0), ("top_p", 1.5)]


@pytest.mark.parametrize("field, value", BAD)
def test_every_door_refuses_the_same_values(field, value):
    doors = [lambda v: GenerateOptions(**{field: v}), lambda v: Member(model="m", **{field: v}),
             lambda v: ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}], **{field: v})]
    if field != "top_p":
        doors += [lambda v: FusionPreset(pool=["m"], **{field: v}), lambda v: EvalSettings(**{field: v})]
    for door in doors:
        with pytest.raises(ValidationError):
            door(value)


def test_the_command_line_takes_its_bounds_from_the_same_types():
    assert bounds(Temperature) == {"min": 0, "max": 2} and bounds(MaxTokens) == {"min": 1}
    assert bounds(TopP) == {"max": 1}  # a strict lower bound is the library's to check
    assert bounds(EvalSettings.model_fields["temperature"]) == {"min": 0, "max": 2}
    for args in (["ask", "hi", "--temperature", "2.5"], ["ask", "hi", "--max-tokens", "0"],
                 ["eval", "builtin:arithmetic", "--models", "x", "--temperature", "2.5"]):
        done = CliRunner().invoke(app, args, terminal_width=200)
        said = re.sub(r"[\s│╭╮╰╯─]+", " ", done.output)
        assert done.exit_code == 2 and f"Invalid value for '{args[-2]}'" in said, (args, said)
    done = CliRunner().invoke(app, ["ask", "hi", "--top-p", "0"])
    assert done.exit_code == 1 and "--top-p: Input should be greater than 0" in done.output
