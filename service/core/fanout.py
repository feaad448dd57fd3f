"""Work done once per watch event, not once per subscriber.

The watch hub hands the *same* object to every subscriber of a kind. ``OncePer`` turns a
per-subscriber function (translate a resource into a domain event, encode a domain
event as gRPC bytes or as an SSE frame) into one that runs once per distinct input and
hands every later caller the same result: with 10,000 watchers, one change costs one
translation and one encoding per protocol, and each subscriber only a filter check and
an enqueue of shared bytes.

Inputs are recognised by identity (``is``), so nothing needs to be hashable and two
equal-but-distinct inputs are simply computed twice. The memo is bounded (oldest first
out): a miss only costs a recomputation, never a wrong answer, because every entry keeps
its input alive and is checked with ``is`` (an id cannot be reused while it is held).

``COUNTS`` tallies the computations per memo name, so tests (and a profile) can see that
one event was translated and encoded once whatever the number of subscribers.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

COUNTS: Counter[str] = Counter()

# Enough for every object of a large namespace being replayed to new subscribers while
# live events flow; an entry is one reference to the input and one to the result.
DEFAULT_SIZE = 4096


class OncePer(Generic[K, V]):
    """``compute`` memoised on the identity of its argument (bounded, oldest evicted)."""

    __slots__ = ("_compute", "_memo", "_name", "_size")

    def __init__(self, name: str, compute: Callable[[K], V], size: int = DEFAULT_SIZE) -> None:
        self._name = name
        self._compute = compute
        self._size = size
        self._memo: OrderedDict[int, tuple[K, V]] = OrderedDict()

    def __call__(self, key: K) -> V:
        hit = self._memo.get(id(key))
        if hit is not None and hit[0] is key:
            return hit[1]
        value = self._compute(key)
        COUNTS[self._name] += 1
        self._memo[id(key)] = (key, value)
        if len(self._memo) > self._size:
            self._memo.popitem(last=False)
        return value
