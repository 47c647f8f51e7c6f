"""The MLflow pyfunc entry point (models-from-code): wraps any family's Predictor.

`mlflow models serve -m models:/quartet-<family>-<task>@champion` loads this file; the model dir
travels as the artifact `model_dir`, the code as `code_paths`, and `model_config["predictor"]`
names the family's Predictor class ('families.<family>.task:Predictor').
Input: one request per row (the same JSON fields as the HTTP API); output: one response per row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow


class QuartetModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        from components.track import load_predictor

        self.predictor = load_predictor(context.model_config["predictor"], Path(context.artifacts["model_dir"]))

    def predict(self, context, model_input, params=None):  # no type hints: MLflow would read them as a schema
        rows = model_input.to_dict("records") if hasattr(model_input, "to_dict") else list(model_input)
        requests = [self.predictor.request_model.model_validate(_plain(r)) for r in rows]
        return [resp.model_dump() for resp in self.predictor.predict_batch(requests)]


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
