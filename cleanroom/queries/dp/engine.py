"""The DP engine: the only module that imports OpenDP.

Plain inputs in (a compiled ``Plan`` from ``cleanroom.queries.sql``, a ``PrivacyUnit``
built from the dataset's public policy, a target epsilon, and later a Polars
``LazyFrame`` of the pool), a ``Release`` out (values, 95% intervals, the epsilon spent).

How a query becomes a measurement:

- Privacy unit = contributor, neighbour relation = *replace one*: the frame's
  ``contributor_id`` is OpenDP's identifier and the input metric is
  ``ChangeOneIdDistance`` (``unit_of(changes=1, identifier=...)``): two pools are
  neighbours when one contributor's whole data is replaced by anyone else's, the pool
  size staying the same. The size is public (the catalog shows it, results carry it, and
  every contributor can derive it from their share of a payment), so "added or removed"
  would protect nothing that is not already known, while charging half the loss of what
  a replacement reveals. The loss of this relation is what ``map`` reports, what the
  budget is charged and what every figure shows (see ``PRIVACY_UNIT``). Every
  contributor is truncated to ``max_rows_per_contributor`` rows *after* the WHERE filter
  (OpenDP's ``truncate_per_group`` pattern, ``keep="first"``). Without a ``by``, that
  bounds the rows a contributor has in all groups together, so Laplace noise on each
  group's count and sum is calibrated to that total (L1) influence.
- Public keys: group keys come from the schema (categories, booleans, histogram bins);
  the aggregated frame is joined onto the full key set (``with_keys``), so every group is
  released (with noise) whether or not it has rows, and no threshold is needed.
- AVG is the noisy SUM divided by the noisy COUNT of the same group, and the COUNT is
  shared with ``COUNT(*)`` when both are asked: half the noise of a separate mean. Its
  95% interval is one interval per cell (``mean_half_width``): the error of S'/N' is
  about (e_S - mean * e_N) / N, a difference of two independent Laplace variables of
  public scales, whose two-sided tail has a closed form; the half-width solves it at
  the released mean and divides by the released count (plug-in, from noisy values and
  public scales only). Where the released count is too small for that to mean anything
  the interval is the column's public bounds.
- Calibration in closed form: pure-DP loss is proportional to ``1/scale``, so the
  measurement is built once at ``global_scale=1``, the scale solved as
  ``loss(1) / epsilon``, rebuilt and verified with ``map(d_in)`` (nudged up if float
  rounding lands a hair above). OpenDP's default binary search takes ~3 s per query.

OpenDP 0.16.0 traps guarded here (tests in tests/queries/test_dp_traps.py):

- ``truncate_num_groups(k)`` keeps only ``k-1`` groups (``rank("dense") < k`` with ranks
  starting at 1; with ``k=1`` it silently drops every row). The engine never uses it: it
  truncates rows per contributor only.
- ``keep="sample"`` with one grouping column fails at ``collect``: the engine keeps
  ``"first"`` (rows arrive in upload order, which is data-independent of the query).
- An in-memory ``DataFrame`` inside the LazyFrame is copied when the plan is handed to
  OpenDP (~0.5 s per million rows): the engine turns it into an IPC scan over a
  RAM-backed file first (tmpfs, 0600, unlinked right after the run). These files hold
  decrypted pool data: named ``cleanroom-pool-<pid>-<start time>-<random token>-*``, they
  are swept by ``scratch_sweep`` when a worker process starts (celery signals in
  ``cleanroom.queries.tasks``) and before each run, unless the exact process that wrote
  them (same pid AND same start time) is still alive: a reused pid protects nothing.
- OpenDP charges at ``release()``, before ``collect()`` can fail: ``mechanism_dry_run``
  runs the exact measurement on an empty frame of the same schema first.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import tempfile
from dataclasses import dataclass, field
from typing import Any

import opendp.prelude as dp
import polars as pl
from opendp.accuracy import summarize_polars_measurement
from opendp.extras.polars import _lazyframe_domain_from_schema
from opendp.mod import OpenDPException

from cleanroom.queries.sql import IDENTIFIER_COLUMN, QUANTILE_CANDIDATES, Aggregate, Plan

dp.enable_features("contrib")

ALPHA = 0.05
MAX_EPSILON = 100.0
MAX_DELTA = 1e-3
# OpenDP counts rows in u32: a pool bound of 2^32 rows or more cannot be measured.
MAX_POOL_ROWS = 2**32 - 1
PRIVACY_UNIT = (
    "One contributor's whole data (all their rows, truncated to the policy's rows per "
    "contributor) replaced by anyone else's, with the pool size public. Epsilon and delta "
    "are the loss of that relation (OpenDP ChangeOneIdDistance on the contributor)."
)
SHM_DIR = "/dev/shm"  # noqa: S108 - RAM-backed, see _as_scan
POLARS_TYPES: dict[str, Any] = {
    "integer": pl.Int64,
    "float": pl.Float64,
    "string": pl.String,
    "boolean": pl.Boolean,
}


class EngineError(Exception):
    """The plan cannot be turned into a measurement (e.g. bounds overflow): refuse it."""


@dataclass(frozen=True)
class PrivacyUnit:
    """What one contributor may change, from the dataset's public policy."""

    max_rows_per_contributor: int
    # A public upper bound on the rows of the pool after truncation; OpenDP needs it for
    # float sums (rounding error grows with the number of terms) and overflow checks.
    max_rows: int


@dataclass(frozen=True)
class Statistic:
    """One noisy number per group that OpenDP releases (several outputs may share one)."""

    name: str
    kind: str  # len | sum | quantile
    column: str | None = None
    quantile: float | None = None


@dataclass
class Mechanism:
    """A calibrated measurement with its public accuracy; opaque outside this module."""

    plan: Plan
    unit: PrivacyUnit
    epsilon: float
    scale: float
    statistics: tuple[Statistic, ...]
    # statistic name -> (distribution, scale)
    noise: dict[str, tuple[str, float]]
    measurement: Any = field(repr=False)
    schema: dict[str, Any] = field(repr=False)
    # Approximate DP only (private keys): the delta spent and the count threshold.
    delta: float | None = None
    threshold: int | None = None
    # (statistic, alpha) -> half-width: asked once per released cell, computed once.
    _half_widths: dict[tuple[str, float], float | None] = field(
        default_factory=dict, repr=False, compare=False
    )

    def parameters(self) -> dict[str, Any]:
        """Everything that fixes this mechanism's privacy loss, as plain JSON values.

        Stored with a query at submission; a run rebuilt from the policy at execution time
        must give the same, or it is not the mechanism that was priced and charged.
        """
        return {
            "relation": "change_one_contributor",
            "epsilon": self.epsilon,
            "delta": self.delta or 0.0,
            "threshold": self.threshold,
            "max_rows_per_contributor": self.unit.max_rows_per_contributor,
            "max_rows": self.unit.max_rows,
            "noise": {name: [kind, scale] for name, (kind, scale) in sorted(self.noise.items())},
            "bounds": {
                a.column: [a.lower, a.upper]
                for a in self.plan.aggregates
                if a.column is not None and a.lower is not None
            },
            "keys": [[key.column, list(key.labels), key.private] for key in self.plan.group_keys],
        }

    def half_width(self, statistic: str, alpha: float = ALPHA) -> float | None:
        key = (statistic, alpha)
        if key not in self._half_widths:
            self._half_widths[key] = self._half_width(statistic, alpha)
        return self._half_widths[key]

    def _half_width(self, statistic: str, alpha: float) -> float | None:
        distribution, scale = self.noise.get(statistic, ("", float("nan")))
        if not distribution or not math.isfinite(scale):
            return None
        if scale == 0:
            return 0.0
        if distribution == "Integer Laplace":
            return float(dp.discrete_laplacian_scale_to_accuracy(scale, alpha))
        if distribution == "Float Laplace":
            return float(dp.laplacian_scale_to_accuracy(scale, alpha))
        return None

    def accuracy(self, group_size: int | None = None) -> list[dict[str, Any]]:
        """Expected 95% half-width per output column, from public information only.

        A mean's half-width depends on its group's size: given ``group_size`` (e.g. the
        public pool size over the number of groups) it is stated for a group that large.
        """
        out: list[dict[str, Any]] = []
        for aggregate in self.plan.aggregates:
            entry: dict[str, Any] = {
                "column": aggregate.alias,
                "aggregate": aggregate.kind if aggregate.kind != "quantile" else "quantile",
                "confidence": 1 - ALPHA,
            }
            if self.threshold is not None:
                entry["threshold"] = self.threshold
            if aggregate.kind == "count":
                entry["half_width"] = self.half_width("__len")
                entry["distribution"], entry["scale"] = self.noise["__len"]
            elif aggregate.kind == "sum":
                name = f"__sum_{aggregate.column}"
                entry["half_width"] = self.half_width(name)
                entry["distribution"], entry["scale"] = self.noise[name]
            elif aggregate.kind == "avg":
                name = f"__sum_{aggregate.column}"
                entry["distribution"], entry["scale"] = self.noise[name]
                entry["count_scale"] = self.noise["__len"][1]
                entry["half_width"] = None
                if group_size:
                    # Worst case over the column's bounds: the mean's error grows with it.
                    largest = max(abs(float(aggregate.lower or 0)), abs(float(aggregate.upper or 0)))
                    entry["half_width"] = mean_half_width(
                        sum_scale=self.noise[name][1],
                        count_scale=self.noise["__len"][1],
                        mean=largest,
                        count=float(group_size),
                    )
                    entry["group_size"] = group_size
                entry["note"] = (
                    "One 95% interval per cell: the noisy sum over the noisy count, its error "
                    "(sum noise minus mean times count noise) divided by the count; it narrows "
                    "as the group grows."
                )
            else:
                entry["half_width"] = None
                entry["distribution"] = "Exponential mechanism"
                entry["scale"] = self.noise[_quantile_name(aggregate)][1]
                entry["note"] = "Chosen among public candidates; no closed-form interval."
            out.append(entry)
        return out


@dataclass(frozen=True)
class Release:
    columns: list[str]
    rows: list[list[Any]]
    # One entry per row and column: [low, high] or None (keys, quantiles).
    intervals: list[list[list[float] | None]]
    epsilon: float


def _quantile_name(aggregate: Aggregate) -> str:
    return f"__q_{aggregate.column}_{aggregate.quantile}"


def _statistics(plan: Plan) -> tuple[Statistic, ...]:
    statistics: dict[str, Statistic] = {}
    if plan.has_private_keys:
        # The threshold is applied to a noisy count of each group.
        statistics["__len"] = Statistic(name="__len", kind="len")
    for aggregate in plan.aggregates:
        if aggregate.kind in ("count", "avg"):
            statistics.setdefault("__len", Statistic(name="__len", kind="len"))
        if aggregate.kind in ("sum", "avg"):
            name = f"__sum_{aggregate.column}"
            statistics.setdefault(name, Statistic(name=name, kind="sum", column=aggregate.column))
        if aggregate.kind == "quantile":
            name = _quantile_name(aggregate)
            statistics.setdefault(
                name,
                Statistic(
                    name=name,
                    kind="quantile",
                    column=aggregate.column,
                    quantile=aggregate.quantile,
                ),
            )
    return tuple(statistics.values())


def frame_schema(plan: Plan) -> dict[str, Any]:
    """The Polars schema of the pool frame the plan runs over."""
    schema: dict[str, Any] = {IDENTIFIER_COLUMN: pl.Int64}
    for spec in plan.schema:
        schema[spec.name] = POLARS_TYPES[spec.type]
    return schema


def _bounds(plan: Plan, column: str) -> tuple[Any, Any]:
    spec = plan.column_spec(column)
    assert spec.lower is not None and spec.upper is not None
    if spec.type == "integer":
        return int(spec.lower), int(spec.upper)
    return float(spec.lower), float(spec.upper)


def _filled(plan: Plan, column: str) -> pl.Expr:
    """The column with missing values imputed by a public constant inside the bounds."""
    spec = plan.column_spec(column)
    lower, upper = _bounds(plan, column)
    zero = min(max(0, lower), upper)
    expression = pl.col(column)
    if spec.type == "float":
        expression = expression.fill_nan(float(zero))
    return expression.fill_null(zero)


def _candidates(plan: Plan, column: str) -> list[Any]:
    lower, upper = _bounds(plan, column)
    if isinstance(lower, int):
        step = max(1, (upper - lower) // (QUANTILE_CANDIDATES - 1))
        values = list(range(lower, upper + 1, step))
        if values[-1] != upper:
            values.append(upper)
        return values
    return [
        lower + (upper - lower) * i / (QUANTILE_CANDIDATES - 1) for i in range(QUANTILE_CANDIDATES)
    ]


def _aggregations(plan: Plan, statistics: tuple[Statistic, ...]) -> list[pl.Expr]:
    out: list[pl.Expr] = []
    for statistic in statistics:
        if statistic.kind == "len":
            out.append(dp.len(signed=True).alias(statistic.name))
        elif statistic.kind == "sum":
            assert statistic.column is not None
            column: Any = _filled(plan, statistic.column)
            out.append(column.dp.sum(_bounds(plan, statistic.column)).alias(statistic.name))
        else:
            assert statistic.column is not None and statistic.quantile is not None
            column = _filled(plan, statistic.column)
            candidates = _candidates(plan, statistic.column)
            out.append(column.dp.quantile(statistic.quantile, candidates).alias(statistic.name))
    return out


def _with_bins(plan: Plan, frame: pl.LazyFrame) -> pl.LazyFrame:
    """Add each histogram key as a bin number 1..n (a row-by-row, public function)."""
    columns = []
    for key in plan.group_keys:
        if key.bins is None:
            continue
        lower, upper, count = key.bins
        width = (upper - lower) / count
        value = pl.col(key.column).cast(pl.Float64).fill_nan(lower).clip(lower, upper)
        number = ((value - lower) / width).floor().cast(pl.Int64).clip(0, count - 1) + 1
        columns.append(number.alias(key.frame_column))
    return frame.with_columns(columns) if columns else frame


def _keys_frame(plan: Plan) -> pl.DataFrame:
    frame: pl.DataFrame | None = None
    for key in plan.group_keys:
        if key.bins is not None:
            series = pl.Series(key.frame_column, list(range(1, key.bins[2] + 1)), dtype=pl.Int64)
        else:
            dtype = POLARS_TYPES[plan.column_spec(key.column).type]
            series = pl.Series(key.frame_column, list(key.labels), dtype=dtype)
        part = series.to_frame()
        frame = part if frame is None else frame.join(part, how="cross")
    assert frame is not None
    return frame


def _polars_plan(plan: Plan, unit: PrivacyUnit, schema: dict[str, Any]) -> pl.LazyFrame:
    statistics = _statistics(plan)
    base = pl.LazyFrame(schema=schema)
    if plan.where is not None:
        base = base.filter(plan.where)
    # Truncate each contributor to k rows in all groups together; "first", not "sample".
    rank = pl.int_range(pl.len()).over(IDENTIFIER_COLUMN)
    base = base.filter(rank < unit.max_rows_per_contributor)
    aggregations = _aggregations(plan, statistics)
    if not plan.group_keys:
        return base.select(aggregations)
    by = [key.frame_column for key in plan.group_keys]
    grouped = base.group_by(by).agg(aggregations)
    if plan.has_private_keys:
        return grouped  # keys come from the data: released above a threshold only
    return _keys_frame(plan).lazy().join(grouped, how="left", on=by, nulls_equal=True)


def _space(plan: Plan, unit: PrivacyUnit) -> tuple[Any, Any, Any, dict[str, Any]]:
    schema = frame_schema(plan)
    for key in plan.group_keys:
        if key.bins is not None:
            schema[key.frame_column] = pl.Int64
    domain = _lazyframe_domain_from_schema(pl.Schema(schema))
    domain = dp.with_margin(domain, dp.polars.Margin(by=[], max_length=unit.max_rows))
    if plan.has_private_keys:
        # Float sums per private group need a public bound on the number of groups:
        # there cannot be more groups than rows.
        by = [key.frame_column for key in plan.group_keys]
        domain = dp.with_margin(
            domain,
            dp.polars.Margin(by=by, max_length=unit.max_rows, max_groups=unit.max_rows),
        )
    # Replace-one: the pool size is public, so that is the relation to charge for.
    metric, d_in = dp.unit_of(changes=1, identifier=IDENTIFIER_COLUMN)
    return domain, metric, d_in, schema


def _make(
    plan: Plan, unit: PrivacyUnit, scale: float, threshold: int | None = None
) -> tuple[Any, Any, dict[str, Any]]:
    domain, metric, d_in, schema = _space(plan, unit)
    measure = dp.approximate(dp.max_divergence()) if plan.has_private_keys else dp.max_divergence()
    measurement = dp.m.make_private_lazyframe(
        domain,
        metric,
        measure,
        _polars_plan(plan, unit, schema),
        global_scale=scale,
        threshold=threshold,
    )
    return measurement, d_in, schema


MAX_THRESHOLD = 2**32 - 1


def _loss(measurement: Any, d_in: Any) -> tuple[float, float]:
    """(epsilon, delta) of a measurement; delta is 0 under pure DP."""
    loss = measurement.map(d_in)
    if isinstance(loss, tuple):
        return float(loss[0]), float(loss[1])
    return float(loss), 0.0


def _threshold_for(plan: Plan, unit: PrivacyUnit, scale: float, delta: float) -> int:
    """The smallest count threshold whose delta is within the target (delta falls with it)."""
    low, high = 0, MAX_THRESHOLD
    while low < high:
        middle = (low + high) // 2
        try:
            measurement, d_in, _ = _make(plan, unit, scale, middle)
            fits = _loss(measurement, d_in)[1] <= delta
        except OpenDPException:
            fits = False
        if fits:
            high = middle
        else:
            low = middle + 1
    return low


def mechanism_build(
    *, plan: Plan, unit: PrivacyUnit, epsilon: float, delta: float | None = None
) -> Mechanism:
    """Calibrate the plan to spend at most `epsilon` (closed form, verified with `map`).

    With private group keys the release is (epsilon, delta)-DP: the scale is solved for
    epsilon as above (the threshold does not change epsilon), then the smallest count
    threshold whose delta fits is found by bisection over integers.
    """
    if not (isinstance(epsilon, float | int) and math.isfinite(epsilon) and epsilon > 0):
        raise EngineError("epsilon must be a positive finite number.")
    if epsilon > MAX_EPSILON:
        raise EngineError(f"epsilon above {MAX_EPSILON} is refused.")
    if unit.max_rows_per_contributor < 1 or unit.max_rows < 1:
        raise EngineError("The privacy unit needs at least one row per contributor.")
    if unit.max_rows > MAX_POOL_ROWS:
        raise EngineError(
            "The policy allows more rows than the engine can count (rows per contributor "
            f"times max contributors is {unit.max_rows:,}, above {MAX_POOL_ROWS:,}): "
            "compliance must lower max_rows_per_contributor or max_contributors."
        )
    if plan.has_private_keys and not (
        delta is not None and math.isfinite(delta) and 0 < delta <= MAX_DELTA
    ):
        raise EngineError(f"Private group keys need a delta in (0, {MAX_DELTA}].")
    calibration_threshold = MAX_THRESHOLD if plan.has_private_keys else None
    threshold: int | None = None
    try:
        unit_measurement, d_in, _ = _make(plan, unit, 1.0, calibration_threshold)
        loss_at_one = _loss(unit_measurement, d_in)[0]
        if not math.isfinite(loss_at_one) or loss_at_one <= 0:
            raise EngineError("The query has no finite sensitivity.")
        scale = loss_at_one / float(epsilon)
        for attempt in range(8):
            measurement, d_in, schema = _make(plan, unit, scale, calibration_threshold)
            spent = _loss(measurement, d_in)[0]
            if spent <= epsilon:
                break
            scale *= 1 + 1e-12 * 10**attempt
        else:  # pragma: no cover - proportionality held in every case we know
            raise EngineError("Could not calibrate the noise to the requested epsilon.")
        spent_delta: float | None = None
        if plan.has_private_keys:
            assert delta is not None
            threshold = _threshold_for(plan, unit, scale, delta)
            measurement, d_in, schema = _make(plan, unit, scale, threshold)
            spent, spent_delta = _loss(measurement, d_in)
            if spent > epsilon or spent_delta > delta:
                raise EngineError("Could not find a threshold for the requested delta.")
        summary = summarize_polars_measurement(measurement)
    except OpenDPException as error:
        raise EngineError(_opendp_message(error)) from None
    except (ValueError, OverflowError, pl.exceptions.PolarsError) as error:
        # OpenDP raises plain ValueErrors for parameters it cannot represent (e.g. u32).
        raise EngineError(f"The query cannot be made private: {str(error)[:200]}") from None
    noise = {
        str(row["column"]): (str(row["distribution"]), float(row["scale"]))
        for row in summary.iter_rows(named=True)
    }
    return Mechanism(
        plan=plan,
        unit=unit,
        epsilon=spent,
        scale=scale,
        statistics=_statistics(plan),
        noise=noise,
        measurement=measurement,
        schema=schema,
        delta=spent_delta,
        threshold=threshold,
    )


def _opendp_message(error: OpenDPException) -> str:
    message = getattr(error, "message", None) or str(error)
    first = str(message).strip().splitlines()[0] if str(message).strip() else "invalid query"
    if "overflow" in first.lower() or "bound" in first.lower() and "sum" in first.lower():
        return f"The column bounds are too wide for an exact sum ({first[:160]})."
    return f"The query cannot be made private: {first[:200]}"


def _prepared(plan: Plan, frame: pl.LazyFrame) -> pl.LazyFrame:
    return _with_bins(plan, frame)


def mechanism_dry_run(mechanism: Mechanism) -> None:
    """Run the exact measurement on an empty frame of the same schema (spends nothing real)."""
    empty = _prepared(mechanism.plan, pl.LazyFrame(schema=frame_schema(mechanism.plan)))
    try:
        mechanism.measurement(empty).collect()
    except OpenDPException as error:
        raise EngineError(_opendp_message(error)) from None
    except pl.exceptions.PolarsError as error:
        raise EngineError(f"The query failed on an empty frame: {str(error)[:200]}") from None


SHM_PREFIX = "cleanroom-pool-"
# A random token per process, in every scratch file's name with the pid and the process's
# start time: a file is protected only while the very process that wrote it is alive, so
# a pid reused after a SIGKILL (another worker, or anything else) does not keep it.
_PROCESS_TOKEN = secrets.token_hex(8)


def _start_time(pid: int) -> str | None:
    """The process's start time since boot (field 22 of /proc/<pid>/stat), None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def _scratch_prefix() -> str:
    pid = os.getpid()
    return f"{SHM_PREFIX}{pid}-{_start_time(pid) or 0}-{_PROCESS_TOKEN}-"


def _owner_alive(name: str) -> bool:
    """Whether the process that wrote this scratch file is the one running under its pid."""
    parts = name[len(SHM_PREFIX) :].split("-")
    if len(parts) < 4 or not parts[0].isdigit():
        return False  # an old-style or foreign name: nobody can prove it is in use
    pid, started, token = int(parts[0]), parts[1], parts[2]
    if pid == os.getpid():
        return token == _PROCESS_TOKEN
    current = _start_time(pid)
    return current is not None and current == started


def scratch_sweep() -> int:
    """Remove the decrypted pool files of processes that are gone (killed mid-run).

    Called when a worker (process) starts and before each run; returns how many were removed.
    """
    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return 0
    removed = 0
    for name in names:
        if not name.startswith(SHM_PREFIX) or _owner_alive(name):
            continue
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(SHM_DIR, name))
            removed += 1
    return removed


def _as_scan(frame: pl.LazyFrame) -> tuple[pl.LazyFrame, str | None]:
    """An in-memory frame as an IPC scan over a RAM-backed file, so OpenDP does not copy it.

    The file lives in /dev/shm (tmpfs: memory, never disk), is created 0600 by mkstemp and
    unlinked as soon as the mechanism has run (its lifetime is the run, nothing longer);
    files of a worker killed mid-run (their name carries pid, start time and a per-process
    random token) are swept when a worker starts and before every run. Polars canonicalizes scan paths, so an
    anonymous ``memfd`` cannot be used. Without /dev/shm the frame is used as it is.
    """
    if not os.path.isdir(SHM_DIR) or not os.access(SHM_DIR, os.W_OK):
        return frame, None
    try:
        plan_text = frame.explain(optimized=False)
    except pl.exceptions.PolarsError:
        return frame, None
    if not plan_text.lstrip().startswith("DF ["):
        return frame, None
    scratch_sweep()
    fd, path = tempfile.mkstemp(prefix=_scratch_prefix(), suffix=".arrow", dir=SHM_DIR)
    try:
        with os.fdopen(fd, "wb") as handle:
            frame.collect().write_ipc(handle, compression="uncompressed")
    except OSError:
        # e.g. a small /dev/shm in a container: fall back to the (slower) in-memory frame.
        os.unlink(path)
        return frame, None
    except BaseException:
        os.unlink(path)
        raise
    return pl.scan_ipc(path, memory_map=True), path


def mechanism_release(*, mechanism: Mechanism, frame: pl.LazyFrame) -> Release:
    """Run the mechanism once over the pool frame: the only way data leaves the clean room."""
    plan = mechanism.plan
    expected = frame_schema(plan)
    names = frame.collect_schema().names()
    missing = [name for name in expected if name not in names]
    if missing:
        raise EngineError(f"The pool frame lacks columns {missing}.")
    scan, fd = _as_scan(frame)
    scan = scan.select([pl.col(n).cast(t) for n, t in expected.items()])
    try:
        output = mechanism.measurement(_prepared(plan, scan)).collect()
    except OpenDPException as error:
        raise EngineError(_opendp_message(error)) from None
    finally:
        if fd is not None:
            os.unlink(fd)
    return _release(mechanism, output)


def _release(mechanism: Mechanism, output: pl.DataFrame) -> Release:
    plan = mechanism.plan
    output = _sorted_by_keys(plan, output)
    len_half = mechanism.half_width("__len")
    rows: list[list[Any]] = []
    intervals: list[list[list[float] | None]] = []
    for record in output.iter_rows(named=True):
        row: list[Any] = []
        row_intervals: list[list[float] | None] = []
        for name, kind in plan.columns:
            if kind == "key":
                key = next(k for k in plan.group_keys if k.alias == name)
                value = record[key.frame_column]
                row.append(key.labels[int(value) - 1] if key.bins is not None else value)
                row_intervals.append(None)
                continue
            aggregate = next(a for a in plan.aggregates if a.alias == name)
            value, interval = _value(mechanism, aggregate, record, len_half)
            row.append(value)
            row_intervals.append(interval)
        rows.append(row)
        intervals.append(row_intervals)
    return Release(
        columns=[name for name, _ in plan.columns],
        rows=rows,
        intervals=intervals,
        epsilon=mechanism.epsilon,
    )


def _sorted_by_keys(plan: Plan, output: pl.DataFrame) -> pl.DataFrame:
    """Rows in the public key order (the order of a release must not depend on the data)."""
    if not plan.group_keys:
        return output
    if plan.has_private_keys:
        return output.sort([key.frame_column for key in plan.group_keys], nulls_last=True)
    order = _keys_frame(plan).with_row_index("__order")
    by = [key.frame_column for key in plan.group_keys]
    return order.join(output, on=by, how="left", nulls_equal=True).sort("__order")


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _value(
    mechanism: Mechanism,
    aggregate: Aggregate,
    record: dict[str, Any],
    len_half: float | None,
) -> tuple[Any, list[float] | None]:
    if aggregate.kind == "count":
        raw = _number(record["__len"])
        if raw is None or len_half is None:
            return None, None
        # Post-processing: a count is never negative; the interval stays honest.
        # Both ends clamped: a negative noisy count must not give an inverted [0, -5.5].
        return int(max(raw, 0)), [max(raw - len_half, 0.0), max(raw + len_half, 0.0)]
    if aggregate.kind == "sum":
        name = f"__sum_{aggregate.column}"
        raw = _number(record[name])
        half = mechanism.half_width(name)
        if raw is None or half is None:
            return None, None
        value: Any = int(raw) if aggregate.column_type == "integer" else raw
        return value, [raw - half, raw + half]
    if aggregate.kind == "avg":
        name = f"__sum_{aggregate.column}"
        total = _number(record[name])
        count = _number(record["__len"])
        lower = float(aggregate.lower) if aggregate.lower is not None else -math.inf
        upper = float(aggregate.upper) if aggregate.upper is not None else math.inf
        if total is None or count is None or len_half is None:
            return None, None
        mean = min(max(total / count, lower), upper) if count >= 1 else None
        return mean, _mean_interval(
            mean=mean,
            count=count,
            sum_scale=mechanism.noise[name][1],
            count_scale=mechanism.noise["__len"][1],
            count_half_width=len_half,
            lower=lower,
            upper=upper,
        )
    raw = _number(record[_quantile_name(aggregate)])
    return raw, None


def _laplace_difference_tail(t: float, a: float, b: float) -> float:
    """P(|X - Y| > t) for independent X ~ Laplace(a), Y ~ Laplace(b) (a closed form).

    >>> round(_laplace_difference_tail(0.0, 1.0, 2.0), 12)
    1.0
    >>> round(_laplace_difference_tail(3.0, 1.0, 0.0), 6) == round(math.exp(-3.0), 6)
    True
    """
    a, b = max(a, b), min(a, b)
    if b <= 0:
        return math.exp(-t / a) if a > 0 else float(t < 0)
    if math.isclose(a, b, rel_tol=1e-9):
        return math.exp(-t / a) * (1 + t / (2 * a))
    return (a * a * math.exp(-t / a) - b * b * math.exp(-t / b)) / (a * a - b * b)


def mean_half_width(
    *, sum_scale: float, count_scale: float, mean: float, count: float, alpha: float = ALPHA
) -> float:
    """Half-width of the (1 - alpha) interval of a mean S'/N' released as noisy S and N.

    S'/N' - S/N is about (e_S - mean * e_N) / N: the tail of that difference of two
    Laplace variables (scales ``sum_scale`` and ``|mean| * count_scale``) is solved for
    alpha by bisection, then divided by the count. Only public scales and released
    values go in.

    >>> round(mean_half_width(sum_scale=1.0, count_scale=0.0, mean=5.0, count=100.0), 6)
    0.029957
    """
    a, b = float(sum_scale), abs(float(mean)) * float(count_scale)
    low, high = 0.0, 1.0
    while _laplace_difference_tail(high, a, b) > alpha:
        high *= 2
    for _ in range(64):  # 2^-64 of the bracket: far below any printed digit
        middle = (low + high) / 2
        if _laplace_difference_tail(middle, a, b) > alpha:
            low = middle
        else:
            high = middle
    return high / count


def _mean_interval(
    *,
    mean: float | None,
    count: float,
    sum_scale: float,
    count_scale: float,
    count_half_width: float,
    lower: float,
    upper: float,
) -> list[float]:
    """The released mean's 95% interval, clipped to the column's public bounds.

    Where the released count is within its own half-width of zero, the group may be
    empty or tiny: the interval is the whole public range, which is honest.

    >>> _mean_interval(mean=10.0, count=5.0, sum_scale=1.0, count_scale=1.0,
    ...                count_half_width=6.0, lower=0.0, upper=100.0)
    [0.0, 100.0]
    """
    if mean is None or count - count_half_width <= 0:
        return [lower, upper]
    half = mean_half_width(sum_scale=sum_scale, count_scale=count_scale, mean=mean, count=count)
    return [max(mean - half, lower), min(mean + half, upper)]


def opendp_default_calibration_seconds(
    *, frame: pl.LazyFrame, regions: list[str], rows: int
) -> float:
    """For the bench: time OpenDP's own Context to calibrate a grouped COUNT/SUM by search."""
    import time

    income: Any = pl.col("income").fill_null(0.0)
    started = time.perf_counter()
    context = dp.Context.compositor(
        data=frame,
        privacy_unit=dp.unit_of(contributions=1, identifier=IDENTIFIER_COLUMN),
        privacy_loss=dp.loss_of(epsilon=1.0),
        split_evenly_over=1,
        margins=[dp.polars.Margin(by=[], max_length=rows * 1_000_000)],
    )
    query = (
        context.query()
        .truncate_per_group(rows, keep="first")
        .group_by("region")
        .agg(dp.len(signed=True), income.dp.sum((0.0, 500000.0)))
        .with_keys(pl.LazyFrame({"region": regions}))
    )
    query.summarize(alpha=ALPHA)
    return time.perf_counter() - started
