"""The forecaster family (book ch. 15): time series -> the next `horizon` values."""

from components.family import Family, Route
from families.forecaster import data, models, task

FAMILY = Family(
    name="forecaster",
    tasks=("synthetic", "vic_elec"),
    ingest=data.ingest,
    prepare=data.prepare,
    validate_hparams=models.validate_hparams,
    train_loop=task.train_loop,
    evaluate=task.evaluate,
    predictor=task.Predictor,
    metrics=task.METRICS,
    routes=(Route("predict", task.ForecastRequest, task.ForecastResponse),),
    input_example=task.input_example,
)
