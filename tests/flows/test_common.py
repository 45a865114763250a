"""The plan of a job is made once per command: the CLI prepares it, the flow takes it."""

from __future__ import annotations

from flows.common import Planner
from flows.params import AugmentParams


def test_a_prepared_plan_is_taken_once_then_made_anew():
    made = []

    @Planner
    def plan(params):
        made.append(params.seed)
        return object()

    params = AugmentParams(seed=3)
    prepared = plan.prepare(params)
    assert plan(AugmentParams(seed=3)) is prepared  # equal parameters (a copy, as Prefect passes them) take it
    assert len(made) == 1
    again = plan(params)  # taken once: a second run makes its own
    assert again is not prepared and made == [3, 3]


def test_plans_of_other_parameters_are_not_taken():
    @Planner
    def plan(params):
        return params.seed

    plan.prepare(AugmentParams(seed=1))
    assert plan(AugmentParams(seed=2)) == 2
    assert plan(AugmentParams(seed=1)) == 1


def test_a_planner_pickles_as_the_module_attribute_it_is():
    """A flow pickled for Dask workers names its planner: the planner must pickle (its lock does not)."""
    import cloudpickle

    from flows import compare

    assert cloudpickle.loads(cloudpickle.dumps(compare.plan)) is compare.plan
    assert cloudpickle.loads(cloudpickle.dumps(compare.compare_flow.fn)) is not None
