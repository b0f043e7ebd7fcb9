import itertools

import pytest

from app.engine.planning import plan_batches


def cost(plan, lengths, overhead):
    return sum(overhead + (end - start) * lengths[start] for start, end in plan)


def brute_force(lengths, max_rows, max_tokens, overhead):
    n = len(lengths)
    best = None
    for cuts in itertools.product([False, True], repeat=n - 1):
        bounds = [0] + [i + 1 for i, c in enumerate(cuts) if c] + [n]
        plan = list(zip(bounds, bounds[1:]))
        if any(e - s > max_rows or (e - s > 1 and (e - s) * lengths[s] > max_tokens) for s, e in plan):
            continue
        value = cost(plan, lengths, overhead)
        best = value if best is None else min(best, value)
    return best


@pytest.mark.parametrize(
    "lengths",
    [
        [200, 180, 30, 28, 25, 5, 4, 3],
        [64] * 8,
        [256, 8, 8, 8, 8, 8, 8, 8],
        [120, 100, 90, 60, 50, 12, 11, 10, 9, 2],
    ],
)
def test_plan_is_optimal_and_within_limits(lengths):
    plan = plan_batches(lengths, max_rows=4, max_tokens=400, overhead=64)
    assert plan[0][0] == 0 and plan[-1][1] == len(lengths)
    assert all(a[1] == b[0] for a, b in zip(plan, plan[1:]))
    for start, end in plan:
        assert end - start <= 4 and (end - start == 1 or (end - start) * lengths[start] <= 400)
    assert cost(plan, lengths, 64) == brute_force(lengths, 4, 400, 64)


def test_similar_lengths_share_a_batch_and_outliers_do_not():
    assert plan_batches([64] * 8, max_rows=32, max_tokens=10**6, overhead=64) == [(0, 8)]
    plan = plan_batches([250, 10, 10, 10, 10], max_rows=32, max_tokens=10**6, overhead=64)
    assert plan == [(0, 1), (1, 5)]


def test_a_row_longer_than_the_token_budget_still_runs_alone():
    assert plan_batches([1000, 900], max_rows=8, max_tokens=100, overhead=0) == [(0, 1), (1, 2)]
