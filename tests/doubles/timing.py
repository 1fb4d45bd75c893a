"""Simulated time for the doubles: how long a rollout would take in AWS, without waiting for it.

``SimulatedClock`` replaces ``time.sleep`` and ``time.monotonic`` in the executors (``Pacing.sleep`` and
``Pacing.clock``). Time is held in a context variable, which ``worker_pool`` hands to each task it runs: a task
starts at its submitter's time and is moved on only by its own sleeps, so units applied side by side each wait
their own way and the rollout takes as long as the slowest of them, as it would in AWS. ``latest`` is the
furthest any task has come: the simulated length of everything done so far. Code that waited for tasks
continues from ``latest`` after ``sync()``.

``Timing`` tells ``StackSetsDouble`` how long a stack instance takes and which quotas bind; with it, operations
move on by simulated time instead of by polls (see the double's module docstring).
"""

from __future__ import annotations

import contextvars
import threading
from bisect import bisect_left, bisect_right, insort
from dataclasses import dataclass, field
from typing import Any, Literal

# Managed execution, read two ways. "When true, StackSets performs non-conflicting operations concurrently and
# queues conflicting operations", then the note: "If there are already running or queued operations, StackSets
# queues all incoming operations even if they are non-conflicting"
# (https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_ManagedExecution.html). "queued", the
# note's reading and the slower one: the operations of one stack set run one after another (queued instead of
# refused). "concurrent", the first sentence's: those on different stack instances run side by side.
ManagedExecutionReading = Literal["concurrent", "queued"]


class SimulatedClock:
    def __init__(self) -> None:
        self._latest = 0.0
        self._now: contextvars.ContextVar[float] = contextvars.ContextVar(f"simulated-now-{id(self)}", default=0.0)
        self._lock = threading.Lock()

    @property
    def latest(self) -> float:
        return self._latest

    def now(self) -> float:
        return self._now.get()

    def sleep(self, seconds: float) -> None:
        woke = self.now() + max(0.0, seconds)
        self._now.set(woke)
        with self._lock:
            self._latest = max(self._latest, woke)

    def sync(self) -> None:
        """Bring the calling context to the latest time: it waited for the others."""
        self._now.set(self._latest)


@dataclass
class Timing:
    clock: SimulatedClock = field(default_factory=SimulatedClock)
    # How long one stack instance takes to deploy, update or delete, StackSets' own overhead included.
    instance_seconds: float = 120.0
    managed_execution: ManagedExecutionReading = "queued"
    # StackSets instance operations, 10,000: "the maximum number of stack instances, across all stack sets, that
    # you can run operations on in each Region at the same time, per administrator account"
    # (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/cloudformation-limits.html). Which Region
    # counts (the administrator's or each target's) is not said; ``per_region`` False is the slower reading, one
    # pool for every Region.
    concurrent_instances: int = 10_000
    per_region: bool = False
    # Stack instances per stack set, 100,000 (same page); a CreateStackInstances beyond it is refused with
    # LimitExceededException.
    instances_per_stack_set: int = 100_000


class SlotPool:
    """The concurrent-instance quota over time: reservations of ``count`` slots for ``[start, start + span)``,
    where every reservation lasts ``span`` (one stack instance's time)."""

    def __init__(self, capacity: int, span: float) -> None:
        self.capacity = capacity
        self.span = span
        self._starts: list[float] = []
        self._counts: dict[float, int] = {}

    def _window(self, at: float) -> list[tuple[float, int]]:
        lo = bisect_right(self._starts, at - self.span)
        hi = bisect_left(self._starts, at + self.span)
        return [(start, self._counts[start]) for start in self._starts[lo:hi]]

    def _peak(self, at: float, window: list[tuple[float, int]]) -> int:
        points = [at] + [start for start, _ in window if start > at]
        return max(sum(count for start, count in window if start <= point < start + self.span) for point in points)

    def take(self, at: float, wanted: int) -> tuple[float, int]:
        """The first time from ``at`` with a slot free for a whole span, and how many of ``wanted`` are free then
        (StackSets starts what the quota lets it, not all or nothing)."""
        while True:
            window = self._window(at)
            free = self.capacity - self._peak(at, window)
            if free > 0 or not window:
                return at, min(wanted, max(free, 0) or self.capacity)
            at = min(start + self.span for start, _ in window if start + self.span > at)

    def reserve(self, at: float, count: int) -> None:
        if at not in self._counts:
            insort(self._starts, at)
            self._counts[at] = 0
        self._counts[at] += count


_STACK_WRITES = {"create_stack": "CREATE", "update_stack": "UPDATE", "delete_stack": "DELETE"}


class TimedStacks:
    """A CloudFormation client (moto's) whose plain stacks take ``seconds`` of simulated time to settle: moto
    finishes a stack the moment it is asked to, AWS takes minutes. Until then ``DescribeStacks`` reports the
    write in progress (CREATE_IN_PROGRESS, UPDATE_IN_PROGRESS, DELETE_IN_PROGRESS); everything else is moto's."""

    def __init__(self, client: Any, clock: SimulatedClock, seconds: float) -> None:
        self._client = client
        self._clock = clock
        self._seconds = seconds
        self._busy: dict[str, tuple[str, float]] = {}  # stack name or id -> (action, settles at)

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._client, name)
        if name in _STACK_WRITES:

            def write(**kwargs: Any) -> Any:
                response = call(**kwargs)
                settles = (_STACK_WRITES[name], self._clock.now() + self._seconds)
                self._busy[str(kwargs["StackName"])] = settles
                if response.get("StackId"):
                    self._busy[str(response["StackId"])] = settles
                return response

            return write
        if name == "describe_stacks":

            def describe(**kwargs: Any) -> Any:
                response = call(**kwargs)
                for stack in response.get("Stacks", []):
                    for key in (stack.get("StackId"), stack.get("StackName")):
                        action, settles = self._busy.get(str(key), ("", 0.0))
                        if self._clock.now() < settles:
                            stack["StackStatus"] = f"{action}_IN_PROGRESS"
                            break
                return response

            return describe
        return call
