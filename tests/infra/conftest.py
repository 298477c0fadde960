"""Hypothesis settings for the infra tests: with CI set, a fixed, modest set of examples."""

from __future__ import annotations

import os

from hypothesis import settings

# derandomize: the same examples on every CI run, so a red build is reproducible as is.
settings.register_profile("ci", max_examples=50, derandomize=True, deadline=None, database=None)

if os.environ.get("CI"):
    settings.load_profile("ci")
