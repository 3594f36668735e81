"""Distil: turn what a teacher (a fusion, or one strong model) answers into a small model you own, and measure
how much of the teacher's gain it kept.

    from gemfuse import distil
    distil.label("prompts.jsonl", teacher="fusion/default", out="distil/data")     # rows with provenance
    distil.filter("distil/data", min_agree=2)                                       # each row's fate
    report = distil.run("prompts.jsonl", teacher="fusion/default", eval="test.jsonl", out="distil")

`run` chains label -> filter -> tune -> eval and registers the student in the config; every stage resumes.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_face

lazy_face(__name__, {
    "alabel": ".api", "arun": ".api", "filter": ".api", "label": ".api", "run": ".api",
    "DistilSettings": ".settings", "distil_settings": ".settings",
})

if TYPE_CHECKING:
    from .api import alabel, arun, filter, label, run
    from .settings import DistilSettings, distil_settings

__all__ = ["DistilSettings", "alabel", "arun", "distil_settings", "filter", "label", "run"]
