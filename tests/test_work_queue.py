"""The in-memory line of the pipeline and the outbox, and the group commit of their writes:
each citizen's messages in order, other citizens never held up, nothing lost on an error."""
from __future__ import annotations

import asyncio
from typing import Sequence

import pytest

from channels.work_queue import WorkQueue
from store.group_commit import GroupCommit

Msg = tuple[str, str]  # (key, citizen)


def line() -> WorkQueue[Msg, str]:
    return WorkQueue(key=lambda m: m[0], owner=lambda m: m[1])


def test_a_batch_takes_one_message_per_citizen_in_the_order_they_came() -> None:
    q = line()
    q.add([("a1", "an"), ("a2", "an"), ("b1", "binh"), ("a1", "an"), ("c1", "chi")])
    assert len(q) == 4  # a1 once
    first = q.take(10)
    assert first == [("a1", "an"), ("b1", "binh"), ("c1", "chi")]
    assert q.take(10) == []  # an's next message waits until an's first is done
    for m in first:
        q.finish(m)
    q.release(first)
    assert q.take(10) == [("a2", "an")]
    assert not q.knows("b1") and q.knows("a2")


def test_what_an_error_cut_short_is_taken_again_before_that_citizens_next() -> None:
    q = line()
    q.add([("a1", "an"), ("b1", "binh"), ("b2", "binh"), ("c1", "chi")])
    batch = q.take(2)
    assert batch == [("a1", "an"), ("b1", "binh")]
    q.finish(batch[0])
    q.release(batch)  # b1 was neither finished nor retried: the database went away
    again = q.take(10)
    assert sorted(again) == [("b1", "binh"), ("c1", "chi")]  # b1 before binh's b2
    for m in again:
        q.finish(m)
    q.release(again)
    assert q.take(10) == [("b2", "binh")] and len(q) == 0


def test_a_retried_message_comes_next() -> None:
    q = line()
    q.add([("a1", "an"), ("a2", "an")])
    [a1] = q.take(5)
    q.again(a1)
    q.release([a1])
    assert q.take(5) == [("a1", "an")]
    q.add([("a1", "an")])  # claimed again from the database while in hand here: not twice
    assert q.take(5) == [] and len(q) == 1  # a2 waits for a1


def test_one_citizen_flooding_does_not_hold_up_the_others() -> None:
    q = line()
    q.add([(f"f{n}", "flood") for n in range(10_000)] + [("b1", "binh")])
    batch = q.take(8)
    assert batch == [("f0", "flood"), ("b1", "binh")]
    for m in batch:
        q.finish(m)
    q.release(batch)
    q.add([("c1", "chi")])
    assert q.take(8) == [("f1", "flood"), ("c1", "chi")] and len(q) == 9_998


async def test_writes_that_arrive_during_a_write_go_together_in_the_next() -> None:
    calls: list[list[int]] = []
    gate = asyncio.Event()

    async def write(items: Sequence[int]) -> list[int]:
        calls.append(list(items))
        await gate.wait()
        return [i * 10 for i in items]
    commit: GroupCommit[int, int] = GroupCommit(write)
    first = asyncio.ensure_future(commit.submit(1))
    await asyncio.sleep(0)
    rest = [asyncio.ensure_future(commit.submit(n)) for n in (2, 3, 4)]
    await asyncio.sleep(0)
    gate.set()
    assert await first == 10 and [await r for r in rest] == [20, 30, 40]
    assert calls == [[1], [2, 3, 4]]


async def test_a_failed_group_write_fails_each_caller_and_the_next_one_works() -> None:
    async def write(items: Sequence[str]) -> list[str]:
        if "bad" in items:
            raise ConnectionError("database away")
        return list(items)
    commit: GroupCommit[str, str] = GroupCommit(write)
    results = await asyncio.gather(commit.submit("bad"), return_exceptions=True)
    assert isinstance(results[0], ConnectionError)
    assert await commit.submit("good") == "good"
    with pytest.raises(ConnectionError):
        await commit.submit("bad")
