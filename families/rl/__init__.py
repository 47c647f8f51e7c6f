"""The RL family (book ch. 18): REINFORCE and the DQN family on gymnasium CartPole-v1 and LunarLander-v3.

data.py pins the environments and the evaluation seeds; models.py the networks and the zoo;
agents.py (with buffers.py, episodes.py) how each agent learns; train.py the loop; evaluate.py
and serve.py how a model dir is judged and served.
"""

from pathlib import Path

from components.family import Family, Metric, Route
from families.rl import data, evaluate, models, serve, train

# The default pipeline's tasks; the others (Atari) run on request: `quartet train rl Breakout
# --profile full` (an Atari evaluation alone takes minutes on a laptop CPU).
PIPELINE_TASKS = ("CartPole-v1", "LunarLander-v3")

FAMILY = Family(
    name="rl",
    tasks=PIPELINE_TASKS,
    extra_tasks=tuple(t for t in data.TASKS if t not in PIPELINE_TASKS),
    ingest=data.ingest,
    prepare=data.prepare,
    models=models.MODELS,
    loop=train.loop,
    evaluate=evaluate.evaluate,
    predictor=serve.Predictor,
    metrics={t: Metric("return_mean", "max") for t in data.TASKS},
    routes=(Route("act", serve.ActRequest, serve.ActResponse, method="act_batch"),
            Route("episode", serve.EpisodeRequest, serve.EpisodeResponse, method="episode_batch")),
    input_example=serve.input_example,
    test_set_keys=("env_id", "test_seeds"),
    demo_panel=Path(__file__).with_name("demo.js"),
    intended_use={
        "CartPole-v1": "A greedy policy for gymnasium's CartPole-v1 (the book's REINFORCE and DQN family); "
                       "judged by the mean return of 100 fixed-seed test episodes.",
        "LunarLander-v3": "A greedy policy for gymnasium's LunarLander-v3 (discrete actions); judged by the mean "
                          "return of 100 fixed-seed test episodes.",
        "Breakout": "A greedy policy for Atari Breakout (ale-py, the standard DQN preprocessing: 4 stacked 84x84 "
                    "grey frames, frame skip 4); judged by the mean game score of fixed-seed test episodes.",
    },
    limits={
        "CartPole-v1": "Only this simulated environment (gymnasium 1.4, its pinned spec); no real control system.",
        "LunarLander-v3": "Only this simulated environment (gymnasium 1.4, its pinned spec, default physics); "
                          "a return below 200 means it does not land reliably.",
        "Breakout": "Only the ALE Breakout ROM with this preprocessing; a short CPU run plays far below human level.",
    },
)
