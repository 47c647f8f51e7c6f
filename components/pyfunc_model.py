"""The MLflow pyfunc entry point (models-from-code): wraps any family's Predictor.

`mlflow models serve -m models:/quartet-<family>-<task>@champion` loads this file; the model dir
travels as the artifact `model_dir`, the code as `code_paths`. `model_config` names the family's
Predictor class ('families.<family>.serve:Predictor'), the method of the route this task answers
and that route's request class (written by the register stage from the family's Route).
Input: one request per row (the same JSON fields as the HTTP API); output: one response per row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow


class QuartetModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        from components.track import import_object, load_predictor

        cfg = context.model_config
        predictor = load_predictor(cfg["predictor"], Path(context.artifacts["model_dir"]))
        self.answer = getattr(predictor, cfg["method"])
        self.request = import_object(cfg["request"])

    def predict(self, context, model_input, params=None):  # no type hints: MLflow would read them as a schema
        rows = model_input.to_dict("records") if hasattr(model_input, "to_dict") else list(model_input)
        requests = [self.request.model_validate(_plain(r)) for r in rows]
        return [resp.model_dump() for resp in self.answer(requests)]


def _plain(value: Any) -> Any:
    """Schema enforcement hands nested numpy arrays; pydantic wants lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


mlflow.models.set_model(QuartetModel())
