"""The stats counters the loop adds to and the heartbeat thread publishes, without a lock."""

from __future__ import annotations

import sys
import threading

from conveyor.worker.heartbeat import Counters

ADDS = 200_000


def test_a_take_returns_what_was_added_since_the_last_one() -> None:
    c = Counters()
    c.add(1, 0)
    c.add(1, 1)
    assert c.take() == (2, 1)
    assert c.take() == (0, 0)
    c.add(1, 0)
    assert c.take() == (1, 0)


def test_untake_gives_a_take_back_to_the_next_one() -> None:
    c = Counters()
    c.add(3, 1)
    taken = c.take()
    c.add(1, 0)
    c.untake(*taken)  # the beat that took them failed to publish
    assert c.take() == (4, 1)


def test_no_count_is_lost_or_doubled_while_another_thread_takes() -> None:
    c = Counters()
    published = [0, 0]
    done = threading.Event()

    def beat() -> None:
        while not done.is_set():
            p, f = c.take()
            published[0] += p
            published[1] += f
        p, f = c.take()
        published[0] += p
        published[1] += f

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # hand the GIL back and forth as often as CPython allows
    t = threading.Thread(target=beat)
    t.start()
    try:
        for i in range(ADDS):
            c.add(1, i & 1)
    finally:
        done.set()
        t.join()
        sys.setswitchinterval(switch)
    assert published == [ADDS, ADDS // 2]
