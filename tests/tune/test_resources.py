"""What a trial reserves and how many run at once: never more than the cluster can give all their workers."""

from __future__ import annotations

from densenet_ray.tune.runner import driver_resources, max_concurrent_trials


def test_two_cpus_run_two_one_worker_trials_with_a_driver_resource() -> None:
    cluster = {"CPU": 2.0, "TRAIN_DRIVER": 1.0}
    assert driver_resources(cluster) == {"cpu": 0, "TRAIN_DRIVER": 0.01}
    assert max_concurrent_trials(cluster, workers=1, cpus_per_worker=1, gpu=False) == 2
    assert max_concurrent_trials(cluster, workers=2, cpus_per_worker=1, gpu=False) == 1
    assert max_concurrent_trials(cluster, workers=1, cpus_per_worker=1, gpu=False, requested=1) == 1


def test_without_a_driver_resource_the_drivers_cpu_slivers_count() -> None:
    cluster = {"CPU": 2.0}
    assert driver_resources(cluster) == {"cpu": 0.01}
    # 2 x (1 worker CPU + 0.01 driver CPU) > 2 CPUs: one at a time, or the second trial's worker would wait forever.
    assert max_concurrent_trials(cluster, workers=1, cpus_per_worker=1, gpu=False) == 1
    assert max_concurrent_trials({"CPU": 64.0}, workers=4, cpus_per_worker=2, gpu=False) == 7


def test_gpu_trials_are_bounded_by_gpus_and_at_least_one_runs() -> None:
    cluster = {"CPU": 96.0, "GPU": 8.0, "TRAIN_DRIVER": 1.0}
    assert max_concurrent_trials(cluster, workers=4, cpus_per_worker=8, gpu=True) == 2
    assert max_concurrent_trials(cluster, workers=1, cpus_per_worker=4, gpu=True, requested=3) == 3
    assert max_concurrent_trials({"CPU": 1.0}, workers=4, cpus_per_worker=1, gpu=False) == 1  # autoscaling clusters
