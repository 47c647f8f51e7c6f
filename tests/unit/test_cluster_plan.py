"""Pure parts of the cluster path: the host plan, profile stacking, `${VAR}` paths, trial driver
resources, the API-key check. The real cluster is exercised in tests/cluster/."""

from __future__ import annotations

import pytest

from components import config, localcluster
from components.config import REPO_ROOT, ConfigError


def test_plan_gives_each_host_its_own_address_and_linux_sized_names() -> None:
    params = config.load(REPO_ROOT)
    p = localcluster.plan(params, REPO_ROOT)
    ips = [h.ip for h in p.hosts]
    assert len(set(ips)) == len(ips) == len(params.cluster.hosts)
    assert p.head.ip == "10.213.7.10" and p.bridge_ip == "10.213.7.1"
    assert all(len(n) <= 15 for n in [p.bridge, *(h.veth for h in p.hosts)])  # IFNAMSIZ
    assert p.mlflow_url == "http://10.213.7.10:5000" and p.dashboard_url == "http://10.213.7.10:8265"
    assert len(str(p.run_dir)) < 40  # Ray's unix socket paths under it must stay < 108 bytes
    assert p.shared_dir == REPO_ROOT / ".cluster" / "shared"


def test_the_dvc_remote_in_dvc_config_is_the_local_clusters_shared_storage() -> None:
    from components import datasync

    params = config.load(REPO_ROOT)
    assert datasync.default_remote_url(REPO_ROOT) == str(localcluster.plan(params, REPO_ROOT).dvc_remote)


@pytest.mark.parametrize("subnet, why", [("10.0.0.0/16", "/24"), ("8.8.8.0/24", "private"), ("nope", "not a network")])
def test_cluster_subnet_must_be_a_private_slash_24(subnet: str, why: str) -> None:
    raw = config.raw_params(REPO_ROOT) | {"cluster": {"subnet": subnet}}
    with pytest.raises(ConfigError, match=rf"cluster\.subnet.*{why}"):
        config.validate(raw)


def test_cluster_needs_a_head_host() -> None:
    raw = config.raw_params(REPO_ROOT) | {"cluster": {"hosts": {"worker-1": {"cpus": 1}}}}
    with pytest.raises(ConfigError, match="cluster.hosts.*head"):
        config.validate(raw)


def test_profiles_stack_left_to_right() -> None:
    both = config.load(REPO_ROOT, "cluster,tiny")
    cluster_only = config.load(REPO_ROOT, "cluster")
    tp = both.task("forecaster", "synthetic")
    assert tp.tune.launcher == "trainer"  # from cluster
    assert tp.tune.num_samples == 2 and tp.tune.max_train_samples == 300  # tiny wins where both set a key
    assert cluster_only.task("forecaster", "synthetic").tune.num_samples == 32
    with pytest.raises(ConfigError, match="unknown profile 'nope'"):
        config.load(REPO_ROOT, "cluster,nope")


def test_the_cluster_profile_asks_for_no_gpu_and_gpu_adds_them() -> None:
    for family, tasks in config.load(REPO_ROOT, "cluster").families.items():
        for task, tp in tasks.items():
            assert tp.train.gpus_per_worker == 0 and tp.tune.gpus_per_trial == 0, (family, task)
    gpu = config.load(REPO_ROOT, "cluster,gpu").task("forecaster", "synthetic")
    assert gpu.train.gpus_per_worker == 1


def test_env_references_in_paths_expand_or_name_the_missing_variable(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("QUARTET_SHARED_DIR", str(tmp_path))
    assert config.resolve("${QUARTET_SHARED_DIR}/ray_results") == tmp_path / "ray_results"
    monkeypatch.delenv("QUARTET_SHARED_DIR")
    with pytest.raises(ConfigError, match=r"\$\{QUARTET_SHARED_DIR\}.*not set"):
        config.resolve("${QUARTET_SHARED_DIR}/ray_results")
    assert config.resolve("ray_results") == REPO_ROOT / "ray_results"  # plain paths untouched


def test_trainer_trial_drivers_go_to_the_driver_resource_when_a_cluster_offers_it() -> None:
    from components.tune import driver_resources

    assert driver_resources({"CPU": 2.0}) == {"CPU": 0.01}
    assert driver_resources({"CPU": 2.0, "quartet_driver": 1000.0}) == {"CPU": 0, "quartet_driver": 0.01}


def test_api_key_check_needs_the_exact_bearer_token() -> None:
    from components.serve import authorized

    assert authorized("Bearer s3cret", "s3cret")
    for header in (None, "", "s3cret", "Bearer s3cre", "Bearer s3cret2", "Basic s3cret"):
        assert not authorized(header, "s3cret"), header
