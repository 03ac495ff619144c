"""Asynchronous rounds (flcli.algorithms.asynchronous): --concurrency C clients train at once on
the simulated clock (flcli.system), and the server updates on every buffer_size arrivals; a
rounds.csv row is one server update, with its arrivals' mean and max staleness.

The event queue is C slots, each free or holding one client in flight: its id, the server version
it started from, its finish time, its local model and update. A client's work is computed when it
starts (it depends only on the model it got), so the queue holds results waiting for their
arrival times. The loop, at simulated time `now`:

1. when slots are free and no client in flight finishes at `now`, start clients in them: a sample
   without replacement of the available clients not in flight, drawn as a synchronous round's
   cohort is, addressed by the count of such dispatches (the first dispatch of C clients is round
   1's cohort); they start from the current model and train as one cohort;
2. otherwise the next arrival, by (finish time, client id), joins the buffer; `now` moves to it;
3. with buffer_size arrivals the server updates; the round ends.

The order is a function of the seed alone, and the queue lives in ServerState.uplink (flight_*,
clock_*), so checkpoint.npz holds it and --resume continues exactly.
"""

import math
from dataclasses import replace

import numpy as np

from flcli.algorithms.base import ClientUpdates, ServerState
from flcli.engine.blas import one_blas_thread
from flcli.engine.clock import samples_of
from flcli.engine.local import Cohort
from flcli.engine.outcome import Trained
from flcli.engine.parametric import ParametricRounds
from flcli.engine.stages import sample_clients
from flcli.errors import RunFailed

QUEUE = ("ids", "version", "finish", "steps", "local", "delta")


class AsynchronousRounds(ParametricRounds):
    def __init__(self, parts):
        super().__init__(parts)
        self.buffer_size = self.algorithm.buffer_size
        self.concurrency = parts.config.concurrency

    def initial_state(self) -> ServerState:
        state = super().initial_state()
        c, p = self.concurrency, state.params.size
        queue = {
            "flight_ids": np.full(c, -1, dtype=np.int64),
            "flight_version": np.zeros(c, dtype=np.int64),
            "flight_finish": np.full(c, math.inf),
            "flight_steps": np.zeros(c, dtype=np.int64),
            "flight_local": np.zeros((c, p), dtype=state.params.dtype),
            "flight_delta": np.zeros((c, p), dtype=state.params.dtype),
            "clock_now": np.array(0.0),
            "clock_version": np.array(0, dtype=np.int64),
            "clock_dispatches": np.array(0, dtype=np.int64),
        }
        return replace(state, uplink={**state.uplink, **queue})

    @property
    def counts(self) -> list[str]:
        return ["staleness_mean", "staleness_max"]

    def sample(self, round: int, now: float) -> np.ndarray:
        return np.zeros(0, dtype=np.int64)  # the queue chooses its clients itself

    def dispatch(self, state: ServerState, queue: dict) -> int:
        """Start clients in the free slots; the bytes sent down."""
        free = np.flatnonzero(queue["flight_ids"] < 0)
        now = float(queue["clock_now"])
        candidates = self.system.available(now)
        candidates[queue["flight_ids"][queue["flight_ids"] >= 0]] = False
        pool = np.flatnonzero(candidates)
        count = min(free.size, pool.size)
        if count == 0:
            return 0
        queue["clock_dispatches"] = queue["clock_dispatches"] + 1
        number = int(queue["clock_dispatches"])
        ids = pool[sample_clients(self.config.seed, number, pool.size, count)]
        cohort = Cohort.of(ids, self.data.offsets)
        work = self.algorithm.client_work(state, ids)
        local = self.fit(cohort, state.params, self.spec, number, work)
        message = self.bytes_per_message
        busy = self.system.seconds(
            ids, samples_of(local.num_steps, self.spec.batch_size), message, message
        )
        slots = free[:count]
        queue["flight_ids"][slots] = ids
        queue["flight_version"][slots] = int(queue["clock_version"])
        queue["flight_finish"][slots] = now + busy
        queue["flight_steps"][slots] = local.num_steps
        queue["flight_local"][slots] = local.params
        queue["flight_delta"][slots] = local.params - state.params
        return count * message

    def train(self, state: ServerState, round: int, ids: np.ndarray) -> Trained:
        queue = {k: np.array(v, copy=True) for k, v in state.uplink.items()}
        started = float(queue["clock_now"])
        arrived = {name: [] for name in QUEUE}
        down = 0
        while len(arrived["ids"]) < self.buffer_size:
            busy = queue["flight_ids"] >= 0
            now = float(queue["clock_now"])
            next_finish = queue["flight_finish"][busy].min() if busy.any() else math.inf
            if not busy.all() and next_finish > now:
                sent = self.dispatch(state, queue)
                down += sent
                if sent:
                    continue
                opening = self.system.next_opening(now)
                if opening < next_finish:  # someone becomes available before the next arrival
                    queue["clock_now"] = np.array(opening)
                    continue
                if not busy.any():
                    raise RunFailed(
                        f"no client is available after {now:g} simulated seconds; check "
                        "--availability"
                    )
            slots = np.flatnonzero(busy)
            slot = slots[np.lexsort((queue["flight_ids"][slots], queue["flight_finish"][slots]))[0]]
            queue["clock_now"] = np.array(queue["flight_finish"][slot])
            for name in QUEUE:
                arrived[name].append(np.array(queue[f"flight_{name}"][slot], copy=True))
            queue["flight_ids"][slot], queue["flight_finish"][slot] = -1, math.inf
        return self.update(state, queue, arrived, started, down)

    def update(self, state, queue, arrived, started, down) -> Trained:
        ids = np.array(arrived["ids"], dtype=np.int64)
        staleness = int(queue["clock_version"]) - np.array(arrived["version"], dtype=np.int64)
        offsets = self.data.offsets
        updates = ClientUpdates(
            ids=ids,
            deltas=np.stack(arrived["delta"]),
            num_samples=offsets[ids + 1] - offsets[ids],
            num_steps=np.array(arrived["steps"], dtype=np.int64),
            params=np.stack(arrived["local"]),
            staleness=staleness,
        )
        with one_blas_thread():
            new_state = self.algorithm.server_update(state, updates)
        queue["clock_version"] = queue["clock_version"] + 1
        new_state = replace(new_state, uplink=queue)
        counts = {"staleness_mean": float(staleness.mean()), "staleness_max": int(staleness.max())}
        seconds = float(queue["clock_now"]) - started
        up = len(ids) * self.bytes_per_message
        return Trained(new_state, up, down, counts, None, seconds, ids)
