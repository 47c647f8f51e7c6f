"""The RL family (book ch. 18): REINFORCE and the DQN family on gymnasium CartPole-v1 and LunarLander-v3.

data.py pins the environments and the evaluation seeds; models.py the networks and the zoo;
agents.py (with buffers.py, episodes.py) how each agent learns; train.py the loop; evaluate.py
and serve.py how a model dir is judged and served.
"""

from components.family import Family, Metric, Route
from families.rl import data, evaluate, models, serve, train

FAMILY = Family(
    name="rl",
    tasks=data.TASKS,
    ingest=data.ingest,
    prepare=data.prepare,
    models=models.MODELS,
    loop=train.loop,
    evaluate=evaluate.evaluate,
    predictor=serve.Predictor,
    metrics={t: Metric("return_mean", "max") for t in data.TASKS},
    routes=(Route("act", serve.ActRequest, serve.ActResponse, method="act_batch"),),
    input_example=serve.input_example,
    test_set_keys=("env_id", "test_seeds"),
)
