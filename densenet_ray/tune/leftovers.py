"""Placement groups an interrupted Ray Train run leaves on a cluster, found and removed before a sweep starts.

When a sweep is interrupted while a trial's Ray Train controller re-creates its worker group (Tune's stop took the
workers away), the new group's placement group can be committed a second after the trial's job ended. Ray removes
a non-detached placement group when its creator job or actor dies, and both were gone already; Ray Train's
placement-group cleaner never had it registered. The group then holds its CPUs until the cluster stops, and the
resumed sweep's trials wait for them forever (seen on a 2-CPU head; ray-project/ray#54305 reports the same
symptom). Ray has no switch for this, so this module removes what Ray would have removed had the events come the
other way round: a non-detached group whose creator job has ended and of whose job no actor is alive apart from
Ray Train's own bookkeeping actors, which create no placement groups. A group of a live job, a detached group and
one an actor of an ended job still owns (Ray Serve's, a detached actor's) stay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from densenet_ray.printing import PrintLine

if TYPE_CHECKING:
    from ray.util.state.common import ActorState, JobState, PlacementGroupState

# Ray Train's detached helpers: one placement-group cleaner per run (left alive by the same interruption) and the
# cluster's run-state actor. Neither creates a placement group, so neither can be the owner that keeps one alive.
TRAIN_BOOKKEEPING = frozenset({"PlacementGroupCleaner", "TrainStateActor"})
ENDED_JOB = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
STATE_LIMIT = 10_000  # Ray's default of 100 would miss groups on a cluster with many dead actors


@dataclass(frozen=True)
class Leftover:
    """A placement group that nothing on the cluster owns any more."""

    placement_group_id: str
    job_id: str
    cpus: float


def _status(value: object) -> str:
    """A state-API status as its name: Ray gives jobs an enum and actors a string."""
    return str(getattr(value, "value", value))


def find_leftovers(groups: list[PlacementGroupState], jobs: list[JobState], actors: list[ActorState]) -> list[Leftover]:
    """The created, non-detached groups whose creator job ended and has no live actor but Ray Train's helpers."""
    ended = {job.job_id for job in jobs if job.job_id and _status(job.status) in ENDED_JOB}
    owning_jobs = {
        actor.job_id for actor in actors if _status(actor.state) != "DEAD" and actor.class_name not in TRAIN_BOOKKEEPING
    }
    found = []
    for group in groups:
        if _status(group.state) != "CREATED" or group.is_detached is not False:
            continue
        if group.creator_job_id in ended and group.creator_job_id not in owning_jobs:
            cpus = sum(bundle.get("unit_resources", {}).get("CPU", 0.0) for bundle in group.bundles or [])
            found.append(Leftover(group.placement_group_id, group.creator_job_id, cpus))
    return found


def remove_leftovers(print_line: PrintLine) -> list[Leftover]:
    """Remove the connected cluster's leftover placement groups, a line for each; nothing when the cluster has no
    state API (no dashboard), which is also where Ray Train's own cleaner cannot work."""
    import ray
    from ray.util import state
    from ray.util.placement_group import PlacementGroup, remove_placement_group
    from ray.util.state.exception import RayStateApiException

    try:
        groups = state.list_placement_groups(
            filters=[("state", "=", "CREATED")], detail=True, limit=STATE_LIMIT, raise_on_missing_output=False
        )
        jobs = state.list_jobs(limit=STATE_LIMIT, raise_on_missing_output=False)
        actors = state.list_actors(filters=[("state", "!=", "DEAD")], limit=STATE_LIMIT, raise_on_missing_output=False)
    except (RayStateApiException, ConnectionError):
        return []
    leftovers = find_leftovers(groups, jobs, actors)
    for leftover in leftovers:
        remove_placement_group(PlacementGroup(ray.PlacementGroupID.from_hex(leftover.placement_group_id)))
        print_line(
            f"freed {leftover.cpus:g} CPU held by placement group {leftover.placement_group_id} of ended job "
            f"{leftover.job_id} (left by an interrupted training run)"
        )
    return leftovers
