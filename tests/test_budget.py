"""The per-connection budget (budget.py): how long each frame waits, whatever the client sends."""

from hypothesis import given
from hypothesis import strategies as st

from zocket_django.budget import Budget

RATE, BURST, BYTE_RATE, BYTE_BURST = 50.0, 10, 20_000.0, 50_000

arrivals = st.lists(
    st.tuples(st.floats(0, 0.2), st.integers(1, 120_000)),  # (seconds after the previous frame, size)
    min_size=1,
    max_size=200,
)


def handle(frames: list[tuple[float, int]]) -> list[tuple[float, int]]:
    """When a consumer that waits for its budget handles each frame: ``(time, size)``."""
    budget = Budget(RATE, BURST, BYTE_RATE, BYTE_BURST, 0.0)
    arrived = done = 0.0
    handled = []
    for gap, size in frames:
        arrived += gap
        start = max(arrived, done)  # frames are handled one after the other
        done = start + budget.charge(size, start)
        handled.append((done, size))
    return handled


@given(arrivals)
def test_no_window_handles_more_than_burst_plus_rate(frames):
    handled = handle(frames)
    for j in range(len(handled)):
        for k in range(j, len(handled)):
            span = handled[k][0] - handled[j][0]
            assert k - j + 1 <= BURST + RATE * span + 1e-6
            assert sum(min(s, BYTE_BURST) for _, s in handled[j : k + 1]) <= BYTE_BURST + BYTE_RATE * span + 1e-3


@given(st.lists(st.integers(1, 400), min_size=1, max_size=300))
def test_a_client_within_its_budget_never_waits(sizes):
    budget = Budget(RATE, BURST, BYTE_RATE, BYTE_BURST, 0.0)
    for n, size in enumerate(sizes):  # one frame every 1/RATE s, at most 400 B each: under both rates
        assert budget.charge(size, n / RATE) == 0.0


def test_a_frame_larger_than_the_byte_burst_can_still_be_paid_for():
    budget = Budget(None, 1, 1000.0, 5000, 0.0)
    assert budget.charge(1_000_000, 0.0) == 0.0  # costs the whole bucket, not more
    assert budget.charge(1_000_000, 0.0) == 5.0  # the next one waits for a full refill


def test_no_rates_means_no_wait():
    budget = Budget(None, 1, 0, 1, 0.0)
    assert all(budget.charge(10**6, 0.0) == 0.0 for _ in range(100))
