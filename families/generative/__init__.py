"""The generative family (book ch. 17): autoencoders, the VAE and the DCGAN on Fashion-MNIST.

Two tasks, two registered models: `fashion-mnist` (a generator, tuned and promoted on FID) and
`fashion-mnist-autoencoder` (an autoencoder, on reconstruction MSE). POST /generative/reconstruct
with task "fashion-mnist" is answered by the autoencoder champion (Route.task_map).
"""

from components.family import Family, Route
from families.generative import data, models, task

FAMILY = Family(
    name="generative",
    tasks=data.TASKS,
    ingest=data.ingest,
    prepare=data.prepare,
    validate_hparams=models.validate_hparams,
    train_loop=task.train_loop,
    evaluate=task.evaluate,
    predictor=task.Predictor,
    metrics=task.METRICS,
    routes=(
        Route("sample", task.SampleRequest, task.SampleResponse),
        Route("reconstruct", task.ReconstructRequest, task.ReconstructResponse,
              task_map={"fashion-mnist": "fashion-mnist-autoencoder"}),
    ),
    input_example=task.input_example,
    check_task_model=task.check_task_model,
)
