"""How a worker polls: `worker.factory.poller_options` maps the settings to the SDK's poller behaviours, for the
real worker and the bench's skeleton alike, and a worker with autoscaling pollers runs a workflow end to end."""
from datetime import timedelta

from temporalio import workflow

# the sandbox re-imports this module for every run of the probe: the rest is passed through
with workflow.unsafe.imports_passed_through():
    import pytest
    from pydantic import ValidationError
    from temporalio.worker import PollerBehaviorAutoscaling, PollerBehaviorSimpleMaximum

    from tests import support


@workflow.defn(name="PollerProbe")
class PollerProbe:
    @workflow.run
    async def run(self) -> str:
        await workflow.sleep(timedelta(milliseconds=10))  # a second workflow task, on the sticky queue
        return "polled"


def test_fixed_pollers_are_a_simple_maximum():
    from worker.factory import poller_options

    options = poller_options(support.test_settings(workflow_task_pollers=3, activity_task_pollers=7))

    assert options["workflow_task_poller_behavior"] == PollerBehaviorSimpleMaximum(maximum=3)
    assert options["activity_task_poller_behavior"] == PollerBehaviorSimpleMaximum(maximum=7)
    assert options["nonsticky_to_sticky_poll_ratio"] == 0.2


def test_autoscaling_pollers_take_the_setting_as_their_ceiling():
    from worker.factory import poller_options

    options = poller_options(support.test_settings(poller_behavior="autoscaling", workflow_task_pollers=20,
                                                   activity_task_pollers=1, nonsticky_to_sticky_poll_ratio=0.5))

    assert options["workflow_task_poller_behavior"] == PollerBehaviorAutoscaling(minimum=1, maximum=20, initial=5)
    # the SDK wants room to scale: a ceiling of 1 becomes 2, and it starts at no more than its ceiling
    assert options["activity_task_poller_behavior"] == PollerBehaviorAutoscaling(minimum=1, maximum=2, initial=1)
    assert options["nonsticky_to_sticky_poll_ratio"] == 0.5


@pytest.mark.parametrize("bad", [{"poller_behavior": "eager"}, {"workflow_task_pollers": 0},
                                 {"nonsticky_to_sticky_poll_ratio": 0}, {"nonsticky_to_sticky_poll_ratio": 1.5}])
def test_bad_poller_settings_are_refused(bad):
    with pytest.raises(ValidationError):
        support.test_settings(**bad)


async def test_a_worker_with_autoscaling_pollers_runs_a_workflow(dev_env, database_url):
    from persistence.engine import create_engine
    from worker.factory import build_worker
    from worker.registry import WORKFLOWS

    settings = support.test_settings(database_url=database_url, poller_behavior="autoscaling",
                                     workflow_task_pollers=10)
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        async with build_worker(dev_env.client, engine, settings, workflows=[*WORKFLOWS, PollerProbe]):
            result = await dev_env.client.execute_workflow(PollerProbe.run, id=support.unique("pollers"),
                                                           task_queue=settings.task_queue)
    finally:
        await engine.dispose()

    assert result == "polled"
