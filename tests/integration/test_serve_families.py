"""The translator, generative and rl routes of DESIGN.md § 5 over real HTTP, on the champions the
tiny-profile `dvc repro` registered. Tiny models translate badly; these tests check the contract
(shapes, determinism, n-best order, error codes), the benchmarks check quality."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest

from tests.conftest import post

pytestmark = pytest.mark.integration


def detail(r) -> str:
    return json.dumps(r.json()["detail"])


# ----------------------------------------------------------------------------- translator
def test_translate_dates_with_beam_n_best_and_attention(server) -> None:
    url, _ = server
    body = {"task": "dates", "texts": ["April 22, 2019", "22 April 2019"], "beam_width": 3, "n_best": 2,
            "return_attention": True}
    r = post(url + "/translator/translate", body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["task"] == "dates" and out["model_version"] == "1"
    assert len(out["translations"]) == 2
    for t in out["translations"]:
        assert isinstance(t["text"], str) and len(t["n_best"]) == 2
        scores = [h["score"] for h in t["n_best"]]
        assert scores == sorted(scores, reverse=True) and t["score"] == scores[0] and t["text"] == t["n_best"][0]["text"]
        attention = np.asarray(t["attention"])
        assert attention.ndim == 2 and attention.shape[1] >= len("April 22, 2019") - 2
        np.testing.assert_allclose(attention.sum(axis=1), 1.0, atol=1e-3)
    greedy = post(url + "/translator/translate", {"task": "dates", "texts": ["April 22, 2019"]}).json()
    assert greedy["translations"][0]["attention"] is None
    again = post(url + "/translator/translate", {"task": "dates", "texts": ["April 22, 2019"]}).json()
    assert again == greedy  # deterministic decoding


def test_translate_en_es(server) -> None:
    url, _ = server
    r = post(url + "/translator/translate", {"task": "en-es", "texts": ["In the beginning God created the heavens and the earth."],
                                              "beam_width": 2})
    assert r.status_code == 200, r.text
    assert isinstance(r.json()["translations"][0]["text"], str)


def test_generate_continues_a_prompt_seeded(server) -> None:
    url, _ = server
    body = {"task": "web-chars", "prompt": "And God said", "n_chars": 40, "temperature": 0.8, "seed": 3}
    r = post(url + "/translator/generate", body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["task"] == "web-chars" and out["model_version"] == "1" and len(out["text"]) == 40
    assert post(url + "/translator/generate", body).json() == out  # same seed, same text
    other = [post(url + "/translator/generate", {**body, "seed": s}).json()["text"] for s in (4, 5, 6)]
    assert any(t != out["text"] for t in other)
    assert post(url + "/translator/generate", {**body, "prompt": "\u2603"}).json()["unknown_chars"] == 1


@pytest.mark.parametrize(
    ("route", "body", "needle"),
    [
        ("/translator/generate", {"task": "web-chars", "n_chars": 0}, "greater than 0"),
        ("/translator/generate", {"task": "web-chars", "n_chars": 5000}, "less than or equal"),
        ("/translator/generate", {"task": "web-chars", "temperature": -1}, "greater than or equal"),
        ("/translator/generate", {"task": "web-chars", "prompt": "x" * 3000}, "at most 2000"),
        ("/translator/generate", {"task": "dates", "prompt": "x"}, "web-chars"),
        ("/translator/translate", {"task": "web-chars", "texts": ["x"]}, "dates"),
    ],
)
def test_generate_and_translate_refuse_each_others_tasks_and_bad_fields(server, route: str, body, needle: str) -> None:
    url, _ = server
    r = post(url + route, body)
    assert r.status_code == 422 and needle in detail(r), (r.status_code, r.text[:300])


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"task": "dates", "texts": [""]}, 422, "empty"),
        ({"task": "dates", "texts": ["   "]}, 422, "empty"),
        ({"task": "dates", "texts": ["April 22, 2019 \u03a9"]}, 422, "\\u03a9"),
        ({"task": "dates", "texts": ["April 22, 2019" * 40]}, 422, "long"),
        ({"task": "dates", "texts": ["April 22, 2019"] * 65}, 422, "64"),
        ({"task": "dates", "texts": ["April 22, 2019"], "beam_width": 2, "n_best": 3}, 422, "n_best"),
        ({"task": "dates", "texts": []}, 422, "at least 1"),
        ({"task": "klingon", "texts": ["April 22, 2019"]}, 404, "served_tasks"),
        ({"task": "en-es", "texts": ["\u65e5\u672c\u8a9e"]}, 422, "vocabulary"),
    ],
)
def test_translate_bad_requests(server, body, status: int, needle: str) -> None:
    url, _ = server
    r = post(url + "/translator/translate", body)
    assert r.status_code == status, r.text
    assert needle.lower() in detail(r).lower(), detail(r)


# ----------------------------------------------------------------------------- generative
def png_pixels(b64: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


def big_png() -> str:
    """A tiny PNG declaring a 6000 x 6000 image: must be refused before it is decoded."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (6000, 6000)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_sample_is_seeded_pngs(server) -> None:
    url, _ = server
    first = post(url + "/generative/sample", {"task": "fashion-mnist", "n": 4, "seed": 7})
    assert first.status_code == 200, first.text
    images = first.json()["images"]
    assert len(images) == 4 and all(png_pixels(i).shape[:2] == (28, 28) for i in images)
    assert post(url + "/generative/sample", {"task": "fashion-mnist", "n": 4, "seed": 7}).json()["images"] == images
    other = post(url + "/generative/sample", {"task": "fashion-mnist", "n": 4, "seed": 8}).json()["images"]
    assert other != images


def test_sample_takes_ddim_steps_and_a_class_label(server) -> None:
    """The tiny profile's champion is the conditional DDPM (T = 50): `steps` changes the images
    and is echoed, `label` by index or by name is the same class, and images follow the label."""
    url, _ = server
    base = {"task": "fashion-mnist", "n": 3, "seed": 4}
    few, more = (post(url + "/generative/sample", {**base, "steps": k}) for k in (2, 10))
    assert few.status_code == more.status_code == 200, few.text + more.text
    assert few.json()["steps"] == 2 and more.json()["steps"] == 10
    assert few.json()["images"] != more.json()["images"]
    by_index = post(url + "/generative/sample", {**base, "label": 7}).json()
    by_name = post(url + "/generative/sample", {**base, "label": "sneaker"}).json()
    assert by_index["label"] == by_name["label"] == 7 and by_name["label_name"] == "Sneaker"
    assert by_index["images"] == by_name["images"]
    other = post(url + "/generative/sample", {**base, "label": "Trouser"}).json()
    assert other["label"] == 1 and other["images"] != by_index["images"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"task": "fashion-mnist", "steps": 51}, "exceeds this diffusion model's t = 50"),
        ({"task": "fashion-mnist", "steps": 0}, "greater than or equal"),
        ({"task": "fashion-mnist", "steps": 1001}, "less than or equal"),
        ({"task": "fashion-mnist", "label": 10}, "out of range"),
        ({"task": "fashion-mnist", "label": "parka"}, "unknown class"),
        ({"task": "fashion-mnist", "label": 2.5}, "label"),
        ({"task": "fashion-mnist", "label": "x" * 41}, "at most 40"),
    ],
)
def test_sample_bad_steps_and_labels_get_422(server, body, needle: str) -> None:
    url, _ = server
    r = post(url + "/generative/sample", body)
    assert r.status_code == 422, r.text
    assert needle.lower() in detail(r).lower(), detail(r)


def test_reconstruct_arrays_and_pngs(server) -> None:
    url, _ = server
    rng = np.random.default_rng(0)
    images = rng.random((3, 28, 28)).round(3)
    r = post(url + "/generative/reconstruct", {"task": "fashion-mnist", "images": images.tolist()})
    assert r.status_code == 200, r.text
    out = r.json()
    assert np.shape(out["reconstructions"]) == (3, 28, 28) and len(out["anomaly_scores"]) == 3
    assert all(np.isfinite(out["anomaly_scores"]))
    blank = np.zeros((1, 28, 28))
    scores = post(url + "/generative/reconstruct", {"task": "fashion-mnist", "images": blank.tolist()}).json()["anomaly_scores"]
    assert len(scores) == 1


@pytest.mark.parametrize(
    ("route", "body", "status"),
    [
        ("sample", {"task": "fashion-mnist", "n": 65, "seed": 1}, 422),
        ("sample", {"task": "fashion-mnist", "n": 0, "seed": 1}, 422),
        ("sample", {"task": "cifar", "n": 2, "seed": 1}, 404),
        ("reconstruct", {"task": "fashion-mnist", "images": [[[0.5] * 28] * 27]}, 422),
        ("reconstruct", {"task": "fashion-mnist", "images": [[[1.5] * 28] * 28]}, 422),
        ("reconstruct", {"task": "fashion-mnist", "images": [[[0.5] * 28] * 28] * 65}, 422),
        ("reconstruct", {"task": "fashion-mnist", "images": ["not a png"]}, 422),
        ("reconstruct", '{"task": "fashion-mnist", "images": [[[NaN]]]}', 422),
        ("reconstruct", {"task": "fashion-mnist", "images": [big_png()]}, 422),  # decompression bomb
    ],
)
def test_generative_bad_requests(server, route: str, body, status: int) -> None:
    url, _ = server
    r = post(url + f"/generative/{route}", body)
    assert r.status_code == status, r.text
    assert r.json()["detail"]


# ----------------------------------------------------------------------------- rl
@pytest.mark.parametrize(("env", "obs_dim", "n_actions"), [("CartPole-v1", 4, 2), ("LunarLander-v3", 8, 4)])
def test_act(server, env: str, obs_dim: int, n_actions: int) -> None:
    url, _ = server
    obs = np.random.default_rng(0).normal(0, 0.1, (5, obs_dim)).round(4).tolist()
    r = post(url + "/rl/act", {"task": env, "observations": obs})
    assert r.status_code == 200, r.text
    out = r.json()
    assert len(out["actions"]) == 5 and all(0 <= a < n_actions for a in out["actions"])
    values = np.asarray(out["action_values"])
    assert values.shape == (5, n_actions)
    assert out["actions"] == values.argmax(axis=1).tolist()


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"task": "CartPole-v1", "observations": [[0.0, 0.0, 0.0]]}, 422, "4"),
        ({"task": "CartPole-v1", "observations": []}, 422, "at least 1"),
        ('{"task": "CartPole-v1", "observations": [[0.0, NaN, 0.0, 0.0]]}', 422, "finite"),
        ({"task": "CartPole-v1", "observations": [[0.0, 1e39, 0.0, 0.0]]}, 422, "less than or equal"),
        ({"task": "Pong-v5", "observations": [[0.0, 0.0, 0.0, 0.0]]}, 404, "served_tasks"),
    ],
)
def test_act_bad_requests(server, body, status: int, needle: str) -> None:
    url, _ = server
    r = post(url + "/rl/act", body)
    assert r.status_code == status, r.text
    assert needle.lower() in detail(r).lower(), detail(r)


def test_a_forecaster_hands_out_its_test_windows_and_they_forecast(server) -> None:
    url, _ = server
    r = post(url + "/forecaster/example", {"task": "vic_elec", "index": 1})
    assert r.status_code == 200, r.text
    ex = r.json()
    assert ex["count"] == 8 and ex["index"] == 1 and len(ex["actual"]) == ex["horizon"] == 14
    assert len(ex["series"][0]) == len(ex["feature_names"]) == 4 and len(ex["future"]) == 14
    r = post(url + "/forecaster/predict", {"task": "vic_elec", "series": [ex["series"]], "horizon": 14,
                                           "future": [ex["future"]], "intervals": ex["interval_levels"]})
    assert r.status_code == 200 and len(r.json()["forecast"][0]) == 14, r.text
    for body, status, needle in [({"task": "vic_elec", "index": 8}, 422, "out of range"),
                                 ({"task": "vic_elec", "index": -1}, 422, "greater than or equal"),
                                 ({"task": "nope", "index": 0}, 404, "unknown forecaster task")]:
        r = post(url + "/forecaster/example", body)
        assert r.status_code == status and needle in r.text, (body, r.status_code, r.text)


def test_an_episode_is_played_server_side_seeded(server) -> None:
    url, _ = server
    bodies = [{"task": "CartPole-v1", "seed": 3, "max_steps": 60}] * 2
    first, again = (post(url + "/rl/episode", b) for b in bodies)
    assert first.status_code == 200, first.text
    ep = first.json()
    assert ep == again.json() and 1 <= ep["steps"] <= 60 and ep["total_reward"] == ep["steps"]  # +1 per step
    assert base64.b64decode(ep["gif"])[:6] in (b"GIF87a", b"GIF89a")
    for body, needle in [({"task": "CartPole-v1", "max_steps": 1001}, "less than or equal"),
                         ({"task": "CartPole-v1", "seed": -1}, "greater than or equal"),
                         ({"task": "CartPole-v1", "frames": 3}, "extra")]:
        r = post(url + "/rl/episode", body)
        assert r.status_code == 422 and needle in r.text.lower(), (body, r.status_code, r.text)


# ----------------------------------------------------------------------------- rl: Atari (an extra task)
def test_breakout_acts_on_stacked_frames_and_plays_an_episode(server) -> None:
    """The fixture trains Breakout with `quartet task` (not a dvc stage); served, /rl/act takes
    `frames` (4x84x84 of 0..255, newest last) and /rl/episode plays a seeded game."""
    url, _ = server
    frames = np.random.default_rng(0).integers(0, 256, (2, 4, 84, 84)).tolist()
    r = post(url + "/rl/act", {"task": "Breakout", "frames": frames})
    assert r.status_code == 200, r.text
    out = r.json()
    values = np.asarray(out["action_values"])
    assert values.shape == (2, 4) and out["actions"] == values.argmax(axis=1).tolist()
    assert out["value_kind"] == "q_values"  # a dueling DQN
    first, again = (post(url + "/rl/episode", {"task": "Breakout", "seed": 5, "max_steps": 40}) for _ in range(2))
    assert first.status_code == 200, first.text
    assert first.json() == again.json() and 1 <= first.json()["steps"] <= 40
    assert base64.b64decode(first.json()["gif"])[:6] in (b"GIF87a", b"GIF89a")


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"task": "Breakout", "frames": [[[[0] * 84] * 84] * 3]}, "4x84x84"),               # 3 frames, not 4
        ({"task": "Breakout", "frames": [[[[0] * 80] * 84] * 4]}, "4x84x84"),               # 80 wide
        ({"task": "Breakout", "frames": [[[[256] * 84] * 84] * 4]}, "less than or equal"),  # not a pixel
        ({"task": "Breakout", "frames": [[[[0] * 84] * 84] * 4] * 9}, "at most 8"),        # too many stacks
        ({"task": "Breakout", "observations": [[0.0] * 8]}, "frames"),                      # vectors for Atari
        ({"task": "CartPole-v1", "frames": [[[[0] * 84] * 84] * 4]}, "observations"),      # frames for a vector task
        ({"task": "Breakout"}, "exactly one"),
    ],
)
def test_breakout_bad_frames_get_422(server, body, needle: str) -> None:
    url, _ = server
    r = post(url + "/rl/act", body)
    assert r.status_code == 422, r.text
    assert needle.lower() in detail(r).lower(), detail(r)
