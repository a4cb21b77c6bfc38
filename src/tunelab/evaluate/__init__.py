"""Test, chat with and compare models from any provider: specs, runner, metrics, judge, report.

The public surface is `compare()` and the pieces its result is made of; everything else is
an implementation detail of `tunelab test/chat/compare`.
"""

from tunelab.evaluate.compare import Comparison, compare
from tunelab.evaluate.runner import Settings
from tunelab.evaluate.specs import ModelSpec, resolve_spec, resolve_specs

__all__ = ["Comparison", "ModelSpec", "Settings", "compare", "resolve_spec", "resolve_specs"]
