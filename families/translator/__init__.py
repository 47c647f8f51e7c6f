"""The translator family (book ch. 16): dates -> ISO, and English -> Spanish Bible verses."""

from components.family import Family, Route
from families.translator import data, models, task

FAMILY = Family(
    name="translator",
    tasks=("dates", "en-es"),
    ingest=data.ingest,
    prepare=data.prepare,
    validate_hparams=models.validate_hparams,
    train_loop=task.train_loop,
    evaluate=task.evaluate,
    predictor=task.Predictor,
    metrics=task.METRICS,
    routes=(Route("translate", task.TranslateRequest, task.TranslateResponse),),
    input_example=task.input_example,
)
