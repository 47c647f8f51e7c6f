"""The RL family (book ch. 18): REINFORCE and the DQN family on gymnasium CartPole-v1 and LunarLander-v3."""

from components.family import Family, Route
from families.rl import data, models, task

FAMILY = Family(
    name="rl",
    tasks=data.TASKS,
    ingest=data.ingest,
    prepare=data.prepare,
    validate_hparams=models.validate_hparams,
    train_loop=task.train_loop,
    evaluate=task.evaluate,
    predictor=task.Predictor,
    metrics=task.METRICS,
    routes=(Route("act", task.ActRequest, task.ActResponse),),
    input_example=task.input_example,
)
