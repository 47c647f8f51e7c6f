"""`quartet status`: dvc's changes named by path, champions with their metric, the app's health."""

from __future__ import annotations

from quartet.status import Champion, Status, describe_changes, render


def test_dvc_changes_name_the_paths_that_moved() -> None:
    changes = [{"changed deps": {"components/stages.py": "modified", "families/rl": "modified"}},
               {"changed outs": {"models/rl/CartPole-v1": "deleted"}}, "changed command", {"always changed": None}]
    assert describe_changes(changes) == ["changed deps: components/stages.py, families/rl",
                                         "changed outs: models/rl/CartPole-v1", "changed command", "always changed"]


def _status(**kw) -> Status:
    base = dict(tracking_uri="sqlite:///x/mlflow.db", stale={}, stale_error="", served=None,
                served_url="http://127.0.0.1:8000",
                champions=[Champion("rl", "CartPole-v1", "quartet-rl-CartPole-v1", "3", "test_return_mean", 500.0),
                           Champion("rl", "LunarLander-v3", "quartet-rl-LunarLander-v3"),
                           Champion("forecaster", "synthetic", "quartet-forecaster-synthetic", error="ConnectionError: refused")])
    return Status(**{**base, **kw})


def test_render_says_each_answer_or_why_there_is_none() -> None:
    text = render(_status())
    assert "tracking store   sqlite:///x/mlflow.db" in text
    assert "up to date" in text and "not running at http://127.0.0.1:8000" in text
    assert "rl/CartPole-v1" in text and "v3  test_return_mean = 500" in text
    assert "rl/LunarLander-v3" in text and "none registered" in text
    assert "unknown: ConnectionError: refused" in text


def test_render_lists_stale_stages_and_the_served_families() -> None:
    served = {"status": "degraded", "families": {"rl": {"status": "degraded", "ready": ["CartPole-v1"],
                                                        "unavailable": {"LunarLander-v3": "no champion"}}}}
    text = render(_status(stale={"train@rl-CartPole-v1": ["changed deps: families/rl"]}, served=served))
    assert "1 stage(s) changed" in text and "train@rl-CartPole-v1" in text and "changed deps: families/rl" in text
    assert "served app       degraded at http://127.0.0.1:8000" in text
    assert "degraded (CartPole-v1; unavailable: LunarLander-v3)" in text
    unknown = render(_status(stale=None, stale_error="dvc status failed: not a DVC repo"))
    assert "pipeline         unknown: dvc status failed: not a DVC repo" in unknown
