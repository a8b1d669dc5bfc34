"""Running cases: the grid, the fuzzer, the shrinker and reproducers.

A *job* is ``(loss name, spec overrides, dtype)``: small and picklable, so jobs
can go to worker processes, which rebuild the case from its spec (builders are
deterministic). Jobs run in batches of one dtype (:data:`BATCH` at most): the
JAX computations of a batch are traced into one jitted program
(:func:`jaxloss.parity.compare.compare_many`), because compiling one program per case
costs XLA's fixed per-program overhead ~840 times, most of a grid run's time.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from jaxloss.parity.cases import Case, Invalid, Loss, load
from jaxloss.parity.compare import CompareRequest, Result, cast_floats, compare_many
from jaxloss.parity.result import jsonable
from jaxloss.parity.tolerances import DTYPES

Job = tuple[str, dict[str, Any], str]  # (loss, spec overrides, dtype)
HVP_DTYPES = ("float64",)


@dataclasses.dataclass
class CaseResult:
    """One case in one dtype, as it goes into the report."""

    loss: str
    family: str
    case: str
    dtype: str
    status: str  # passed / failed / not_implemented / error
    judge: str  # "torch", or "reference" where a documented torch inexactness applies
    params: list[str]
    spec: dict[str, Any]
    result: Result
    seconds: float
    note: str = ""
    reproducer: str = ""
    fuzz: bool = False
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)  # the job's spec overrides
    deviation: str = ""  # the TorchInexact reason, when the case is judged against float64

    @property
    def id(self) -> str:
        return f"{self.loss}/{self.case}[{self.dtype}]"

    def worst(self, kind: str, attr: str) -> float:
        """Worst ``attr`` of the arrays of ``kind`` judged against torch (reference-judged ones,
        whose distance to torch is the documented deviation, are left out)."""
        return self.result.worst(kind, attr, against_torch_only=True)

    def to_json(self) -> dict[str, Any]:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return jsonable({**fields, "id": self.id, "result": self.result.to_json()})


# --------------------------------------------------------------------------- one case
@functools.lru_cache(maxsize=1)
def registry() -> dict[str, Loss]:
    return load()


def functions(case: Case, dtype: str) -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any] | None]:
    """``(jax_fn, torch_fn, reference)`` of a case in a dtype."""
    import torch.nn.functional as F

    import jaxloss

    ref, _ = case.reference_for(dtype)
    if case.make is not None:
        jf, tf = case.make(dtype)
        return jf, tf, ref
    jf = case.jax_fn or getattr(jaxloss, case.loss)
    tf = case.torch_fn or getattr(F, case.loss)
    return jf, tf, ref


def _request(case: Case, dtype: str, device: str) -> CompareRequest:
    """The :func:`jaxloss.parity.compare` call of a case in a dtype."""
    jf, tf, ref = functions(case, dtype)
    args, kwargs = cast_floats((case.args, case.kwargs), dtype)
    return CompareRequest(
        jf,
        tf,
        tuple(args),
        dict(kwargs),
        grad_argnums=case.grad_argnums(),
        hvp=case.hvp and dtype in HVP_DTYPES,
        reference=ref,
        judge=case.judge(dtype),
        device=device,
        arg_names=case.arg_names,
    )


def _case_result(case: Case, dtype: str, r: Result, seconds: float, device: str, fuzz: bool) -> CaseResult:
    dev = case.deviation(dtype)
    cr = CaseResult(
        loss=case.loss,
        family=registry()[case.loss].family,
        case=case.name,
        dtype=dtype,
        status=r.status,
        judge=case.judge(dtype),
        params=sorted(case.params()),
        spec=dict(case.spec),
        result=r,
        seconds=seconds,
        note=case.note,
        fuzz=fuzz,
        deviation=dev.reason if dev else "",
    )
    if r.status in ("failed", "error"):
        cr.reproducer = reproducer(case, dtype, device)
    return cr


def run_cases(items: Sequence[tuple[Case, str]], device: str = "cpu", fuzz: bool = False, merge: bool = True) -> list[CaseResult]:
    """Compare cases (each in a dtype) with :func:`jaxloss.parity.compare.compare_many`: their JAX
    programs are compiled as one (``merge``). A case's ``seconds`` is its share of the batch."""
    t0 = time.perf_counter()
    results: list[Result | None] = [None] * len(items)
    requests, slots = [], []
    for k, (case, dtype) in enumerate(items):
        try:
            requests.append(_request(case, dtype, device))
            slots.append(k)
        except Exception as e:  # noqa: BLE001 - e.g. a builder-made function failing to construct
            results[k] = Result("error", dtype, notes=[f"{type(e).__name__}: {e}"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k, r in zip(slots, compare_many(requests, merge=merge)):
            results[k] = r
    share = (time.perf_counter() - t0) / max(len(items), 1)
    return [_case_result(c, dt, r, share, device, fuzz) for (c, dt), r in zip(items, results) if r is not None]


def run_case(case: Case, dtype: str, device: str = "cpu", fuzz: bool = False) -> CaseResult:
    """Compare one case in one dtype."""
    return run_cases([(case, dtype)], device, fuzz)[0]


def run_batch(jobs: Sequence[Job], device: str = "cpu", fuzz: bool = False) -> list[CaseResult]:
    """Run jobs as one batch (one merged JAX program); a case builder raising is an error result."""
    out: list[CaseResult | None] = [None] * len(jobs)
    items, slots = [], []
    for k, (name, overrides, dtype) in enumerate(jobs):
        loss = registry()[name]
        try:
            items.append((loss.case(overrides), dtype))
            slots.append(k)
        except Exception as e:  # noqa: BLE001
            out[k] = CaseResult(name, loss.family, str(overrides.get("id", overrides)), dtype, "error", "torch", [], dict(overrides),
                                Result("error", dtype, notes=[f"case builder raised {type(e).__name__}: {e}"]), 0.0,
                                overrides=dict(overrides))
    for k, r in zip(slots, run_cases(items, device, fuzz)):
        r.overrides = dict(jobs[k][1])
        out[k] = r
    return [r for r in out if r is not None]


def run_job(job: Job, device: str = "cpu", fuzz: bool = False) -> CaseResult:
    """Run one job on its own."""
    return run_batch([job], device, fuzz)[0]


# --------------------------------------------------------------------------- jobs
def grid_jobs(losses: Iterable[str] | None = None, dtypes: Sequence[str] | None = None) -> list[Job]:
    """Every (grid case, dtype) of the chosen losses."""
    reg = registry()
    names = list(reg) if losses is None else [n for n in reg if n in set(losses)]
    jobs: list[Job] = []
    for n in names:
        for overrides in reg[n].grid:
            try:
                case_dtypes = overrides.get("dtypes") or reg[n].build(reg[n].spec(overrides)).dtypes
            except Exception:  # noqa: BLE001 - a broken grid entry is reported by run_job
                case_dtypes = ("float64",)
            for dt in case_dtypes:
                if dtypes is None or dt in dtypes:
                    jobs.append((n, overrides, dt))
    return jobs


BATCH = 16  # jobs per merged JAX program (see run_batch)


def _chunks(jobs: list[Job], batch: int = BATCH, costs: dict[str, float] | None = None) -> list[list[Job]]:
    """Batches of at most ``batch`` jobs of one dtype (one loss after another), each compiled as
    one program. With ``costs`` (seconds per case of each loss, e.g. :func:`previous_costs`) the
    expensive batches come first, for a better balance across workers; else the registry order."""
    costs = costs or {}
    order = {n: k for k, n in enumerate(dict.fromkeys(j[0] for j in jobs))}
    groups: dict[str, list[Job]] = {}
    for j in sorted(jobs, key=lambda j: (-costs.get(j[0], 0.0), order[j[0]])):
        groups.setdefault(j[2], []).append(j)
    chunks = [g[k : k + batch] for g in groups.values() for k in range(0, len(g), max(batch, 1))]
    return sorted(chunks, key=lambda g: -sum(costs.get(j[0], 0.0) for j in g))


def previous_costs(report_json: str) -> dict[str, float]:
    """Seconds per case of each loss in an earlier report (``{}`` when there is none): the cost
    model of :func:`_chunks`."""
    import json

    try:
        with open(report_json, encoding="utf-8") as fh:
            cases = json.load(fh).get("cases", [])
    except (OSError, ValueError):
        return {}
    total: dict[str, list[float]] = {}
    for c in cases:
        total.setdefault(c.get("loss", ""), []).append(float(c.get("seconds", 0.0)))
    return {k: sum(v) / len(v) for k, v in total.items() if v}


def _run_chunk(chunk: list[Job], device: str, fuzz: bool, mode: str = "default") -> list[CaseResult]:
    """One batch in a worker process, under the parent's float32 precision ``mode`` (:mod:`jaxloss.parity.precisions`)."""
    from jaxloss.parity.precisions import precision

    with precision(mode):
        return run_batch(chunk, device, fuzz)


_SETUP_DONE = False


def _worker_setup(xla_cache: str | None = None) -> None:
    """Once per process: one torch thread, no warnings; and the optional persistent XLA cache."""
    global _SETUP_DONE
    _use_xla_cache(xla_cache)
    if _SETUP_DONE:
        return
    _SETUP_DONE = True
    import torch

    torch.set_num_threads(1)  # small tensors: one thread is faster, and workers share the cores
    warnings.filterwarnings("ignore")


def _pool_worker_setup(xla_cache: str | None = None) -> None:
    """A worker process: Ctrl-C is the parent's to handle (it stops between batches and ends the
    pool); the terminal sends SIGINT to every process of the group, and a worker interrupted
    mid-batch would only add a traceback."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_setup(xla_cache)


def _use_xla_cache(path: str | None) -> None:
    """JAX's persistent compilation cache in ``path`` (``jax_compilation_cache_dir``): compiled
    programs are stored on disk and reloaded by the next run, the very executables a fresh
    compilation would give. JAX sets its cache up once per process, so the first path wins."""
    if not path:
        return
    import jax

    if jax.config.jax_compilation_cache_dir:
        return
    jax.config.update("jax_compilation_cache_dir", os.path.abspath(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_compilation_cache_max_size", 1024**3)


def run_jobs(
    jobs: list[Job],
    workers: int = 1,
    device: str = "cpu",
    progress: Callable[[int, int, str], None] | None = None,
    fuzz: bool = False,
    batch: int = BATCH,
    xla_cache: str | None = None,
    precision: str | None = None,
    costs: dict[str, float] | None = None,
) -> list[CaseResult]:
    """Run jobs (in ``workers`` processes when > 1), in batches of ``batch`` jobs of one dtype
    whose JAX programs are compiled as one (the expensive first, by ``costs``: see :func:`_chunks`);
    progress is reported per batch. ``precision``: the
    :mod:`jaxloss.parity.precisions` mode the worker processes run under (default: this process's)."""
    from jaxloss.parity.precisions import settings

    mode = precision or settings()["mode"]
    chunks = _chunks(jobs, batch, costs)
    total, done = len(jobs), 0
    results: list[CaseResult] = []
    if progress:
        progress(0, total, "")
    if workers <= 1 or len(chunks) <= 1:
        _worker_setup(xla_cache)
        for chunk in chunks:
            results += run_batch(chunk, device, fuzz)
            done += len(chunk)
            if progress:
                progress(done, total, chunk[0][0])
        return results
    # ``workers - 1`` worker processes, and this process works too: it has imported everything
    # already (a spawned worker costs ~4 CPU-seconds of imports). The pool takes the batches from
    # the front (the expensive ones; each finished batch submits the next), this process from the back.
    import collections
    import concurrent.futures as cf
    import multiprocessing as mp
    import queue
    import threading

    _worker_setup(xla_cache)
    ctx = mp.get_context("spawn")  # JAX / torch are not fork-safe
    pending = collections.deque(chunks)
    lock = threading.Lock()
    finished: queue.Queue[cf.Future[list[CaseResult]]] = queue.Queue()
    counts = {"submitted": 0, "received": 0}

    def collect(part: list[CaseResult]) -> None:
        nonlocal done
        results.extend(part)
        done += len(part)
        if progress:
            progress(done, total, part[0].loss if part else "")

    with cf.ProcessPoolExecutor(max_workers=workers - 1, mp_context=ctx, initializer=_pool_worker_setup, initargs=(xla_cache,)) as pool:

        def submit_next() -> None:
            with lock:
                if not pending:
                    return
                chunk = pending.popleft()
                counts["submitted"] += 1
            pool.submit(_run_chunk, chunk, device, fuzz, mode).add_done_callback(on_done)

        def on_done(fut: cf.Future[list[CaseResult]]) -> None:
            submit_next()  # first, so that the count includes it before the result is seen
            finished.put(fut)

        for _ in range(2 * (workers - 1)):
            submit_next()
        try:
            while True:
                while not finished.empty():
                    collect(finished.get().result())
                    counts["received"] += 1
                with lock:
                    chunk = pending.pop() if pending else None
                    all_in = counts["received"] == counts["submitted"]
                if chunk is not None:
                    collect(run_batch(chunk, device, fuzz))
                elif all_in:
                    break
                else:
                    collect(finished.get().result())
                    counts["received"] += 1
        except BaseException:  # Ctrl-C (raised by ``progress``) or a failure: no further batch starts
            with lock:
                pending.clear()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return results


# --------------------------------------------------------------------------- fuzzing
def fuzz_dtypes(loss: Loss, case: Case) -> list[str]:
    """The dtypes a fuzzed case may run in: those the loss's grid uses, limited by the case's
    ``Case.fuzz_dtypes`` (a builder's documented precision limit)."""
    grid = sorted({d for o in loss.grid for d in o.get("dtypes", ("float64",))})
    return [d for d in grid if case.fuzz_dtypes is None or d in case.fuzz_dtypes]


def fuzz_specs(n: int, seed: int, losses: Iterable[str] | None = None, dtypes: Sequence[str] | None = None) -> list[Job]:
    """``n`` random jobs: a loss, a spec drawn from its space, a dtype among those its grid uses."""
    reg = registry()
    # by default the functions (a module row's space is only its seed)
    names = [x for x in reg if len(reg[x].space) > 1] if losses is None else [x for x in reg if x in set(losses)]
    rng = np.random.default_rng(seed)
    jobs: list[Job] = []
    tries = 0
    while len(jobs) < n and tries < 50 * max(n, 1):
        tries += 1
        name = names[int(rng.integers(len(names)))]
        loss = reg[name]
        spec = {k: v[int(rng.integers(len(v)))] for k, v in loss.space.items()}
        spec["seed"] = int(rng.integers(1 << 30))
        try:
            case = loss.case(spec)  # a spec that makes no valid case is drawn again
        except Invalid:
            continue
        allowed = [d for d in fuzz_dtypes(loss, case) if dtypes is None or d in dtypes]
        if not allowed:
            continue
        jobs.append((name, spec, allowed[int(rng.integers(len(allowed)))]))
    return jobs


def shrink(job: Job, device: str = "cpu", budget: int = 60) -> tuple[Job, CaseResult]:
    """Shrink a failing job towards the simplest spec that still fails.

    Greedy: for each spec key, try each choice that comes earlier in the loss's
    fuzzing space (the simplest first) and small seeds; keep a change when the
    case still fails (or errors). At most ``budget`` comparisons.
    """
    name, spec, dtype = job
    loss = registry()[name]
    current = dict(spec)
    best = run_job((name, current, dtype), device, fuzz=True)
    if best.status not in ("failed", "error"):
        return (name, current, dtype), best
    tried = 0
    dtype_order = list(DTYPES)
    improved = True
    while improved and tried < budget:
        improved = False
        candidates: list[tuple[dict[str, Any], str]] = []
        for key, choices in loss.space.items():
            if key == "seed":
                continue
            if current.get(key) in choices:
                for c in choices[: choices.index(current[key])]:
                    candidates.append(({**current, key: c}, dtype))
        if current.get("seed", 0) != 0:
            candidates += [({**current, "seed": s}, dtype) for s in (0, 1, 2)]
        if dtype in dtype_order:
            candidates += [(current, d) for d in dtype_order[: dtype_order.index(dtype)]]
        for cand, dt in candidates:
            if tried >= budget:
                break
            try:
                case = loss.case(cand)
            except Invalid:
                continue
            if dt not in fuzz_dtypes(loss, case):
                continue
            tried += 1
            r = run_job((name, cand, dt), device, fuzz=True)
            if r.status in ("failed", "error"):
                current, dtype, best, improved = cand, dt, r, True
                break
    return (name, current, dtype), best


# --------------------------------------------------------------------------- reproducers
def _literal(x: Any) -> str:
    """Python source for a value: arrays as ``np.array([...], dtype=...)``."""
    if isinstance(x, (np.ndarray, np.generic)):
        a = np.asarray(x)
        name = str(a.dtype)
        if a.size == 0:  # np.array([]) would lose the shape
            npname = "ml_dtypes.bfloat16" if name == "bfloat16" else f"np.{name}"
            return f"np.zeros({a.shape!r}, dtype={npname})"
        if a.dtype.kind == "f" or name == "bfloat16":
            vals = np.asarray(a, dtype=np.float64).tolist()
            body = _fmt(vals)
            if name == "bfloat16":
                return f"np.array({body}).astype(ml_dtypes.bfloat16)"
            return f"np.array({body}, dtype=np.{name})"
        return f"np.array({a.tolist()!r}, dtype=np.{name})"
    if isinstance(x, float) and not math.isfinite(x):
        return f"float('{x}')"
    if isinstance(x, dict):
        return "{" + ", ".join(f"{k!r}: {_literal(v)}" for k, v in x.items()) + "}"
    if isinstance(x, (list, tuple)):
        inner = ", ".join(_literal(v) for v in x)
        return f"[{inner}]" if isinstance(x, list) else f"({inner}{',' if len(x) == 1 else ''})"
    return repr(x)


def _fmt(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(e) for e in v) + "]"
    if math.isnan(v):
        return "np.nan"
    if math.isinf(v):
        return "np.inf" if v > 0 else "-np.inf"
    return repr(float(v))


def reproducer(case: Case, dtype: str, device: str = "cpu") -> str:
    """A few lines of Python that rerun this comparison with :func:`jaxloss.parity.compare`."""
    args, kwargs = cast_floats((case.args, case.kwargs), dtype)
    names = list(case.arg_names[: len(args)])
    lines = [("import functools, numpy as np, ml_dtypes, jax, torch, torch.nn.functional as F, jaxloss, "
              "jaxloss.parity.references"),
             "from jaxloss import parity"]
    if case.make_expr is not None:
        jexpr, texpr = case.make_expr(dtype)
    else:
        jexpr = case.jax_expr or f"jaxloss.{case.loss}"
        texpr = case.torch_expr or f"F.{case.loss}"
    ref, ref_expr = case.reference_for(dtype)
    if "smp_reference" in " ".join([jexpr, texpr, ref_expr or ""]):
        lines.append("from jaxloss.parity import smp_reference")
    for n, a in zip(names, args):
        lines.append(f"{n} = {_literal(a)}")
    call_args = ", ".join(names)
    kw = ", ".join(f"{k}={_literal(v)}" for k, v in kwargs.items())
    opts = [f"grad_argnums={case.grad_argnums()!r}"]
    if case.hvp and dtype in HVP_DTYPES:
        opts.append("hvp=True")
    if case.judge(dtype) != "torch":
        opts.append(f"judge={case.judge(dtype)!r}")
    if ref is not None:
        opts.append(f"reference={ref_expr or 'None'}")
    if device != "cpu":
        opts.append(f"device={device!r}")
    opts.append(f"arg_names={tuple(names)!r}")
    parts = [jexpr, texpr, call_args] + ([kw] if kw else []) + opts
    lines.append(f"print(parity.compare({', '.join(p for p in parts if p)}))")
    return "\n".join(lines)


# --------------------------------------------------------------------------- progress
class Progress:
    """The runner's ``progress(done, total, what)`` callback, drawn by the project's one bar
    (:class:`jaxloss.train.progress.Progress`: rich, with an ETA; it imports neither JAX nor Flax).

    >>> import io
    >>> from jaxloss.parity.runner import Progress
    >>> out = io.StringIO()
    >>> progress = Progress("parity grid", stream=out)
    >>> for done in range(3):
    ...     progress(done, 2, "l1_loss")
    >>> "parity grid" in out.getvalue() and "2/2" in out.getvalue()
    True
    """

    def __init__(self, label: str = "parity", stream: Any = None) -> None:
        self.label, self.stream = label, stream
        self._bar: Any = None

    def __call__(self, done: int, total: int, what: str) -> None:
        from jaxloss.train.progress import Progress as Bar

        if self._bar is None:
            self._bar = Bar(total, self.label, stream=self.stream)
        self._bar.update(done, total=total, text=str(what)[:28])
        if done >= total:
            self._bar.close()
            self._bar = None


def default_workers() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))
