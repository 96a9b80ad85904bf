"""When a thread's monitors are due (schedule.Schedule): monitors over one index fall in step, so
they share reads, and none runs more often than its interval allows."""
from log_processor.schedule import Schedule


def simulate(intervals: list[float], cycle_seconds: float, until: float) -> tuple[list[int], int]:
    """(cycles run per monitor, reads made) with every cycle taking `cycle_seconds`, as the thread's loop
    runs it; checks on the way that no monitor starts sooner than 3/4 of its interval after its last start."""
    schedule = Schedule(intervals)
    runs, reads, now = [0] * len(intervals), 0, 0.0
    started = [None] * len(intervals)
    while now < until:
        due = schedule.due(now)
        if due:
            reads += 1
            for i in due:
                runs[i] += 1
                assert started[i] is None or now - started[i] >= 0.75 * intervals[i], (i, started[i], now)
                started[i] = now
            now += cycle_seconds
            schedule.ran(due, now, [intervals[i] for i in due])
        else:
            now = schedule.next_at()
    return runs, reads


def test_monitors_with_one_interval_always_share_the_read():
    runs, reads = simulate([60.0, 60.0, 60.0], cycle_seconds=3.0, until=3600)
    assert runs == [58, 58, 58] and reads == 58        # every 63 s: the interval after each cycle ended


def test_a_monitor_with_twice_the_interval_falls_in_step_and_keeps_its_rate():
    runs, reads = simulate([60.0, 120.0], cycle_seconds=3.0, until=3600)
    fast, slow = runs
    assert reads == fast                                # the slower monitor never reads on its own
    assert 29 <= slow <= 30 and 58 <= fast <= 60        # each at its own rate (60 or 63 s apart for the fast one)


def test_monitors_that_cannot_meet_read_separately():
    runs, reads = simulate([60.0, 97.0], cycle_seconds=3.0, until=3600)
    assert reads < sum(runs)                            # some cycles shared ...
    assert reads > max(runs)                            # ... and some not: no monitor dragged along


def test_nothing_is_due_before_its_time_and_a_monitor_joins_only_within_a_quarter_of_its_interval():
    schedule = Schedule([10.0, 20.0])
    assert schedule.due(0.0) == [0, 1]
    schedule.ran([0, 1], 1.0, [10.0, 20.0])             # due at 11 and 21
    assert schedule.due(10.9) == [] and schedule.next_at() == 11.0
    assert schedule.due(11.0) == [0]                    # 21 is more than 5 s (a quarter of 20) away
    schedule.ran([0], 12.0, [10.0])                     # due at 22 and 21
    assert schedule.due(21.0) == [0, 1]                 # 22 is within 2.5 s (a quarter of 10)
