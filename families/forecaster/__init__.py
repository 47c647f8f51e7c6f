"""The forecaster family (book ch. 15): time series -> the next `horizon` values.

data.py ingests and prepares the splits; models.py declares the zoo; train.py the datasets, loss
and loop (the shared supervised one); evaluate.py the metrics and plots beside the baselines of
baselines.py; intervals.py the conformal prediction intervals; serve.py the request schemas and
the Predictor.
"""

from components.family import Family, Route
from families.forecaster import data, evaluate, models, serve, train

FAMILY = Family(
    name="forecaster",
    tasks=("synthetic", "vic_elec"),
    ingest=data.ingest,
    prepare=data.prepare,
    models=models.MODELS,
    loop=train.loop,
    evaluate=evaluate.evaluate,
    predictor=serve.Predictor,
    metrics=train.METRICS,
    routes=(Route("predict", serve.ForecastRequest, serve.ForecastResponse, method="predict_batch"),),
    input_example=serve.input_example,
    # A test metric is comparable only on the same windows, scaled the same way.
    test_set_keys=("features", "seq_len", "horizon", "mean", "std"),
    calibrate=evaluate.calibrate,
    baselines=evaluate.BASELINES,
)
