"""CPU threads that do not collapse on a busy machine.

torch's CPU kernels run in OpenMP parallel regions (libgomp in the PyPI wheels). By default
libgomp's idle threads spin at every barrier for ~300,000 iterations before sleeping; when
another process holds one of the cores, the thread that shares it is descheduled while the
others spin, and each of the thousands of tiny ops of a decoding step waits for a time
slice. Measured here (2 cores, other processes running): a Whisper-tiny-sized decode loop took
1.7 s with 1 thread and 20 s with 2 threads spinning; with passive waiting, 0.8 s with 2
threads and 0.47 s with 1 (bench notes of issue 18). But on a quiet machine passive waiting
costs every parallel region a wake-up: greedy decoding of a 12-layer, 768-wide Llama fell from
35 to 24 tok/s with 2 threads (1 thread: 23). So:

- ``prepare_environment()`` (run when ``lightpipe`` is imported) sets
  ``OMP_WAIT_POLICY=PASSIVE`` only when asked (``LIGHTPIPE_THREADS=passive``: for machines that
  are always shared) and neither it nor ``GOMP_SPINCOUNT`` / ``KMP_BLOCKTIME`` is set. OpenMP
  reads these when torch loads, so this applies when lightpipe is imported before torch.
- ``choose_threads()`` (run at the first model load) samples ``/proc/stat`` for 50 ms and
  lowers torch's thread count to the number of idle cores among those the process may run
  on (``os.sched_getaffinity``), at least 1; it never raises it.

- ``adapt_threads()`` (run at each decoding step of ``generate()`` and each batch of a
  pipeline; a clock read unless ``ADAPT_EVERY`` seconds have passed) keeps following the
  machine after that: from ``/proc/stat`` and ``/proc/self/stat`` it takes the cores the
  *other* processes used since its last look (all cores' busy time minus this process's own),
  and sets torch's count to the cores they left, at least 1, at most the count it started from
  (``_ceiling``; raised again when the other process stops). A 2-thread run that meets a
  process started after the model loaded drops to 1 thread within ``ADAPT_EVERY`` seconds of
  work instead of spinning at every barrier (Whisper tiny.en, 5 clips: see bench/busy_core.py).
  A count the user sets with ``torch.set_num_threads`` after loading becomes the new ceiling.

- ``ThreadChooser`` (the C decode step's, ``quantization/step.py``): per generated token, torch's
  count or one, whichever the clock says is faster, timed in turns.

Overrides: ``LIGHTPIPE_NUM_THREADS=N`` sets the count (``torch.set_num_threads(N)``) and skips
the sampling; ``OMP_NUM_THREADS`` set by the user, or ``torch.set_num_threads`` called before
the first load, is kept as it is (the count is only lowered, never raised);
``LIGHTPIPE_THREADS=off`` turns all three off (as do the two counts above for the
adapting); an ``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT`` or
``KMP_BLOCKTIME`` of the user's is kept.
"""

from __future__ import annotations

import os
import sys
import time

_WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
_chosen: int | None = None
ADAPT_EVERY = 0.5  # seconds between looks at the other processes' load (adapt_threads)
_ceiling: int | None = None  # adapt_threads' upper bound; None: not adapting
_set: int | None = None  # the count adapt_threads last saw or set
LOWER_AT = 0.3  # cores of other processes' load that take one thread away
_last: tuple | None = None  # (monotonic time, {cpu: (idle, all ticks)}, own ticks) of the last look


def _enabled() -> bool:
    return os.environ.get("LIGHTPIPE_THREADS", "").strip().lower() not in ("off", "0", "no", "false")


def prepare_environment(environ=None, torch_loaded: bool | None = None) -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` when ``LIGHTPIPE_THREADS=passive`` asks for it, unless
    the user set a wait policy or torch is already loaded (too late to matter). True when set."""
    environ = os.environ if environ is None else environ
    if torch_loaded is None:
        torch_loaded = "torch" in sys.modules
    if torch_loaded or environ.get("LIGHTPIPE_THREADS", "").strip().lower() in ("off", "0", "no", "false"):
        return False
    if environ.get("LIGHTPIPE_THREADS", "").strip().lower() != "passive":
        return False  # spinning is faster on a quiet machine; idle-core threads cover busy ones
    if any(name in environ for name in _WAIT_VARIABLES):
        return False
    environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


def _cpu_times(cpus: set[int]) -> dict[int, tuple[int, int]]:
    """cpu -> (idle ticks, all ticks) from /proc/stat (idle includes iowait)."""
    times = {}
    with open("/proc/stat") as handle:
        for line in handle:
            if not line.startswith("cpu") or line.startswith("cpu "):
                continue
            name, *values = line.split()
            cpu = int(name[3:])
            if cpu in cpus:
                ticks = [int(v) for v in values[:8]]
                times[cpu] = (ticks[3] + ticks[4], sum(ticks))
    return times


def idle_cores(cpus: set[int] | None = None, interval: float = 0.05) -> float | None:
    """How many of ``cpus`` (this process's affinity by default) were idle over ``interval``
    seconds, in cores (2 cores half idle: 1.0); None where /proc/stat is unreadable."""
    cpus = cpus if cpus is not None else _affinity()
    try:
        before = _cpu_times(cpus)
        time.sleep(interval)
        after = _cpu_times(cpus)
    except (OSError, ValueError):
        return None
    idle = 0.0
    for cpu, (idle_then, total_then) in before.items():
        if cpu not in after:
            continue
        idle_now, total_now = after[cpu]
        total = total_now - total_then
        if total > 0:
            idle += (idle_now - idle_then) / total
    return idle if before else None


def _affinity() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def threads_for(current: int, idle: float | None) -> int:
    """The thread count for ``current`` torch threads and ``idle`` idle cores: the idle cores
    rounded to nearest, at least 1, at most ``current``; ``current`` when unknown."""
    if idle is None:
        return current
    return max(1, min(current, int(idle + 0.5)))


def choose_threads(force: bool = False) -> int:
    """Pick torch's thread count once per process (see the module docstring); the count."""
    global _chosen, _ceiling
    import torch

    if _chosen is not None and not force:
        return torch.get_num_threads()
    _ceiling = None  # adapting only where the count is lightpipe's to choose (below)
    explicit = os.environ.get("LIGHTPIPE_NUM_THREADS", "").strip()
    if explicit:
        try:
            count = int(explicit)
        except ValueError:
            raise ValueError(f"LIGHTPIPE_NUM_THREADS={explicit!r} is not a number: set it to a "
                             "thread count such as 2, or unset it to let lightpipe choose.") from None
        if count < 1:
            raise ValueError(f"LIGHTPIPE_NUM_THREADS={explicit!r}: use a count of 1 or more.")
        torch.set_num_threads(count)
    elif _enabled() and "OMP_NUM_THREADS" not in os.environ:
        current = torch.get_num_threads()
        if current > 1:
            count = threads_for(current, idle_cores())
            if count != current:
                torch.set_num_threads(count)
            _start_adapting(current)
    _chosen = torch.get_num_threads()
    return _chosen


def _own_ticks() -> int | None:
    """This process's user + system CPU time in clock ticks (all its threads)."""
    try:
        with open("/proc/self/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    except (OSError, ValueError, IndexError):
        return None


def _look() -> tuple | None:
    cpus = _affinity()
    try:
        times = _cpu_times(cpus)
    except (OSError, ValueError):
        return None
    own = _own_ticks()
    return None if own is None or not times else (time.monotonic(), times, own)


def _start_adapting(ceiling: int) -> None:
    global _ceiling, _set, _last
    import torch

    _ceiling, _set, _last = ceiling, torch.get_num_threads(), _look()


def others_busy(before: tuple, after: tuple) -> float | None:
    """Cores the other processes kept busy between two looks (``_look``): the busy share of
    each core summed, minus this process's own CPU time over the same wall time."""
    (t0, cpus0, own0), (t1, cpus1, own1) = before, after
    busy = 0.0
    for cpu, (idle0, total0) in cpus0.items():
        if cpu in cpus1:
            idle1, total1 = cpus1[cpu]
            if total1 > total0:
                busy += 1.0 - (idle1 - idle0) / (total1 - total0)
    if t1 <= t0:
        return None
    own = (own1 - own0) / os.sysconf("SC_CLK_TCK") / (t1 - t0)
    return max(0.0, busy - own)


def adapt_threads() -> int | None:
    """Follow the other processes' load (see the module docstring): torch's thread count, or
    None when not adapting. Cheap when called often: it looks at most every ADAPT_EVERY s."""
    global _ceiling, _set, _last
    if _ceiling is None or _last is None:
        return None
    if time.monotonic() - _last[0] < ADAPT_EVERY:
        return _set
    import torch

    current = torch.get_num_threads()
    if current != _set:  # the user chose a count since: it is the ceiling now
        _ceiling = current
    now = _look()
    if now is None:
        _ceiling = None  # /proc unreadable: stop adapting
        return None
    others = others_busy(_last, now)
    _last = now
    if others is not None:
        # a core shared with our spinning thread gives the other process about half its
        # time: a third of a core already means one (busy 2-core machine: 0.4-0.5)
        count = threads_for(_ceiling, len(now[1]) - others - (0.5 - LOWER_AT))
        if count != current:
            torch.set_num_threads(count)
            current = count
    _set = current
    return current


class ThreadChooser:
    """The thread count of each step: torch's count or one, whichever the clock says is faster.

    On a quiet machine more threads win; when another process holds a core, a step split
    across threads waits at each product's barrier for a descheduled thread (a 2-thread run
    on a busy 2-core machine was 7x slower than one thread). So the two are timed in turns
    (``trials`` tokens each, a token timed from one step's start to the next's: the output
    projection after the step runs with the same cap), the faster median is kept for ``keep``
    tokens, then timed again. A choice that wins again is kept twice as long (up to
    ``longest`` tokens: the trials' slower tokens cost ~2-3% of a 128-token run otherwise); two
    tokens in a row slower than 1.5x the chosen median (the machine got busy, or quiet) end the
    keeping early.
    """

    def __init__(self, threads: int, trials: int = 3, keep: int = 48, longest: int = 768):
        self.candidates = [threads, 1] if threads > 1 else [1]
        self.trials, self.keep, self.longest = trials, keep, longest
        self.times: dict[int, list[float]] = {n: [] for n in self.candidates}
        self.chosen: int | None = None if len(self.candidates) > 1 else 1
        self.left = 0
        self.span = keep  # how long the next choice is kept
        self.best = 0.0  # the chosen count's median token time
        self.slow = 0  # kept tokens in a row slower than 1.5x best

    def next(self) -> int:
        if self.chosen is not None and self.left > 0:
            return self.chosen
        if len(self.candidates) == 1:
            return 1
        # trial: the candidate with the fewest timings so far
        return min(self.candidates, key=lambda n: len(self.times[n]))

    def record(self, threads: int, seconds: float) -> None:
        if len(self.candidates) == 1:
            return
        if self.chosen is not None and self.left > 0:
            self.left -= 1
            self.slow = self.slow + 1 if seconds > 1.5 * self.best else 0
            if self.slow >= 2:  # the machine changed: time both again now
                self.left, self.slow, self.span = 0, 0, self.keep
            return
        self.times[threads].append(seconds)
        if all(len(times) >= self.trials for times in self.times.values()):
            medians = {n: sorted(t)[len(t) // 2] for n, t in self.times.items()}
            chosen = min(self.candidates, key=medians.__getitem__)
            self.span = min(2 * self.span, self.longest) if chosen == self.chosen else self.keep
            self.chosen, self.best, self.left, self.slow = chosen, medians[chosen], self.span, 0
            self.times = {n: [] for n in self.candidates}
