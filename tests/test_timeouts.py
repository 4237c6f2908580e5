"""core.timeouts: asyncio.timeout's meaning from one shared heap of deadlines per loop."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref

import pytest
import uvloop

from llmdeck.core import timeouts


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request):
    """Runs a test's coroutine on each event loop the platform runs on."""
    if request.param == "uvloop":
        return uvloop.run
    return asyncio.run


def test_a_block_past_its_time_raises_timeout_error_on_time(run):
    async def scenario():
        started = time.perf_counter()
        with pytest.raises(TimeoutError):
            async with timeouts.timeout(0.05) as timer:
                await asyncio.sleep(5)
        elapsed = time.perf_counter() - started
        assert timer.expired()
        assert 0.05 <= elapsed < 0.05 + timeouts.GRAIN + 0.1
        # The task is left as it was: no cancel request outlives the timeout.
        assert asyncio.current_task().cancelling() == 0

    run(scenario())


def test_a_block_within_its_time_is_untouched_and_leaves_nothing_behind(run):
    async def scenario():
        async with timeouts.timeout(5) as timer:
            await asyncio.sleep(0.01)
        async with timeouts.timeout(None):
            await asyncio.sleep(0)
        assert not timer.expired()
        deadlines = timeouts._deadlines(asyncio.get_running_loop())
        assert deadlines.live == 0

    run(scenario())


def test_of_two_timeouts_the_one_that_expires_raises(run):
    async def scenario():
        with pytest.raises(TimeoutError):
            async with timeouts.timeout(5) as outer, timeouts.timeout(0.02) as inner:
                await asyncio.sleep(5)
        assert inner.expired() and not outer.expired()

        with pytest.raises(TimeoutError):
            async with timeouts.timeout(0.02) as outer, timeouts.timeout(5) as inner:
                await asyncio.sleep(5)
        # The inner one let the cancel through; the outer one turned it into the error.
        assert outer.expired() and not inner.expired()
        assert asyncio.current_task().cancelling() == 0

    run(scenario())


def test_a_cancel_from_outside_stays_a_cancel(run):
    async def scenario():
        async def waits():
            async with timeouts.timeout(5):
                await asyncio.sleep(5)

        task = asyncio.create_task(waits())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(scenario())


def test_deadlines_fire_in_order_and_cancelled_ones_never(run):
    async def scenario():
        fired: list[str] = []
        loop = asyncio.get_running_loop()
        now = loop.time()
        timeouts.call_at(now + 0.04, lambda: fired.append("late"))
        dropped = timeouts.call_at(now + 0.01, lambda: fired.append("dropped"))
        timeouts.call_later(0.02, lambda: fired.append("early"))
        dropped.cancel()
        assert dropped.cancelled()
        await asyncio.sleep(0.04 + 3 * timeouts.GRAIN)
        assert fired == ["early", "late"]

    run(scenario())


def test_a_failing_callback_is_reported_and_the_rest_still_fire(run):
    async def scenario():
        loop = asyncio.get_running_loop()
        reported: list[dict] = []
        loop.set_exception_handler(lambda _loop, context: reported.append(context))
        fired: list[int] = []
        try:
            timeouts.call_later(0.01, lambda: 1 / 0)
            timeouts.call_later(0.01, lambda: fired.append(1))
            await asyncio.sleep(0.01 + 3 * timeouts.GRAIN)
        finally:
            loop.set_exception_handler(None)
        assert fired == [1]
        assert isinstance(reported[0]["exception"], ZeroDivisionError)

    run(scenario())


def test_cancelled_deadlines_do_not_pile_up(run):
    async def scenario():
        handles = [timeouts.call_later(60, lambda: None) for _ in range(3 * timeouts._SWEEP_AT)]
        for handle in handles:
            handle.cancel()
        timeouts.call_later(60, lambda: None).cancel()
        deadlines = timeouts._deadlines(asyncio.get_running_loop())
        assert len(deadlines.heap) <= timeouts._SWEEP_AT + 1
        assert deadlines.live == 0

    run(scenario())


def test_a_finished_event_loop_is_not_kept_alive(run):
    async def scenario():
        timeouts.call_later(60, lambda: None)  # left pending when the loop ends
        return weakref.ref(asyncio.get_running_loop())

    finished = [run(scenario()) for _ in range(3)]
    gc.collect()
    assert all(loop() is None for loop in finished)
