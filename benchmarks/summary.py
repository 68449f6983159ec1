"""Turn a directory of `<model>_run<k>.txt` logs into the seed's latency table.

Per model: each run's timed average, the mean across runs (the headline, as in the
AMC README's Latency column), the sample standard deviation across runs (n-1), the
min / median / max of the run averages, and, with a baseline, the ratio
model mean / baseline mean. Runs that failed, hold no result, or are missing (a gap
in the run numbers, or fewer runs than the manifest expected) are listed, never
counted as zero.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

from amc_tf.core.errors import AmcError
from amc_tf.benchmarks.loglines import MAX_REPEATS, run_number
from amc_tf.benchmarks.logparse import parse_file
from amc_tf.benchmarks.runlog import RUN_FILE, read_manifest
from amc_tf.core.textsafe import safe


@dataclass
class RunSummary:
    k: int
    status: str  # ok | failed | no_result | lost | missing
    avg_ms: float | None = None
    count: int | None = None
    log: str | None = None
    error: str | None = None


@dataclass
class ModelSummary:
    name: str
    runs: list[RunSummary] = field(default_factory=list)
    expected_runs: int | None = None
    mean_ms: float | None = None
    std_ms: float | None = None
    min_ms: float | None = None
    median_ms: float | None = None
    max_ms: float | None = None
    ratio_to_baseline: float | None = None
    ignored: list[str] = field(default_factory=list)  # <name>_run<k>.txt files whose k is not 1..MAX_REPEATS

    @property
    def n_ok(self) -> int:
        return sum(1 for r in self.runs if r.status == "ok")

    @property
    def problems(self) -> list[str]:
        out = [f"run {r.k} {r.status}" + (f": {r.error}" if r.error else "") for r in self.runs if r.status != "ok"]
        if self.ignored:
            out.append(f"ignored {len(self.ignored)} file(s) whose run number is not 1..{MAX_REPEATS} "
                       f"(e.g. {self.ignored[0][:80]})")
        return out

    @property
    def complete(self) -> bool:
        return not self.problems and self.n_ok > 0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["n_ok"] = self.n_ok
        d["complete"] = self.complete
        d["problems"] = self.problems
        return d


def _stats(ms: ModelSummary) -> None:
    vals = [r.avg_ms for r in ms.runs if r.status == "ok" and r.avg_ms is not None]
    if not vals:
        return
    ms.mean_ms = statistics.fmean(vals)
    ms.std_ms = statistics.stdev(vals) if len(vals) > 1 else 0.0
    ms.min_ms, ms.median_ms, ms.max_ms = min(vals), statistics.median(vals), max(vals)


def summarize_dir(logdir: str | Path, baseline: str | None = None, names: list[str] | None = None) -> list[ModelSummary]:
    logdir = Path(logdir)
    if not logdir.is_dir():
        raise AmcError(f"log directory not found: {logdir}")
    groups: dict[str, dict[int, Path]] = {}
    ignored: dict[str, list[str]] = {}
    for p in sorted(logdir.iterdir()):
        m = RUN_FILE.match(p.name)
        if m and p.is_file():
            k = run_number(m.group("k"))  # the file name is not trusted to size a loop
            if k is None:
                ignored.setdefault(m.group("name"), []).append(p.name)
                continue
            groups.setdefault(m.group("name"), {})[k] = p
    # a manifest with no surviving logs still says its model is missing runs
    for mp in logdir.glob("*.bench.json"):
        groups.setdefault(mp.name[: -len(".bench.json")], {})
    if names is not None:
        wanted = set(names) | ({baseline} if baseline else set())
        groups = {n: g for n, g in groups.items() if n in wanted}
    if not groups:
        runs = sorted(str(d) for d in logdir.iterdir() if d.is_dir() and any(d.glob("*_run*.txt")))
        hint = f"; its folders {', '.join(runs[-3:])} hold logs (one per bench call): summarize one" if runs else ""
        raise AmcError(f"no <model>_run<k>.txt logs in {logdir}{hint}")

    out = []
    for name in sorted(groups):
        files = groups[name]
        manifest = read_manifest(logdir, name)
        expected = manifest.get("expected_runs") if manifest else None
        man_runs = {r["k"]: r for r in manifest.get("runs", [])} if manifest else {}
        last = min(max(list(files) + [expected or 0] + list(man_runs)), MAX_REPEATS)
        ms = ModelSummary(name=name, expected_runs=expected, ignored=ignored.get(name, []))
        for k in range(1, last + 1):
            if k in files:
                r = parse_file(files[k])
                run = RunSummary(k=k, status=r.status, avg_ms=r.inference_avg_ms, count=r.count,
                                 log=str(files[k]), error=r.error)
                mr = man_runs.get(k)
                if mr and mr.get("status") not in (None, "ok") and run.status == "ok":
                    # the log parses, but the runner saw the run fail (e.g. non-zero exit)
                    run.status, run.error = mr["status"], mr.get("error")
            else:
                mr = man_runs.get(k)
                if mr:
                    run = RunSummary(k=k, status=mr.get("status") or "missing", error=mr.get("error") or "no log")
                    if run.status == "ok":
                        run.status, run.error = "missing", "the manifest lists it but its log is gone"
                else:
                    run = RunSummary(k=k, status="missing", error="no log (never run or lost)")
            ms.runs.append(run)
        _stats(ms)
        out.append(ms)

    if baseline:
        base = next((m for m in out if m.name == baseline), None)
        if base is None:
            raise AmcError(f"--baseline {baseline!r} has no logs in {logdir} (models: {', '.join(m.name for m in out)})")
        if base.mean_ms is None:
            raise AmcError(f"--baseline {baseline!r} has no successful run to compare against")
        for m in out:
            if m.mean_ms is not None:
                m.ratio_to_baseline = m.mean_ms / base.mean_ms
    return out


def _printable(models: list[ModelSummary]) -> list[ModelSummary]:
    """Copies whose names and errors (from file names and log lines) have every control character
    made visible (amc_tf.core.textsafe.safe): a table row cannot be split or recoloured by them."""
    from dataclasses import replace

    return [replace(m, name=safe(m.name), ignored=[safe(i) for i in m.ignored],
                    runs=[replace(r, error=None if r.error is None else safe(r.error)) for r in m.runs])
            for m in models]


def _f(v: float | None, nd: int = 1) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def _decimals(v: float | None, base: int) -> int:
    """`base` decimals, more for small latencies so at least 3 significant digits show."""
    if not v or v <= 0:
        return base
    return max(base, 2 - math.floor(math.log10(v)))


def _runs_cell(m: ModelSummary) -> str:
    total = max(len(m.runs), m.expected_runs or 0)
    return f"{m.n_ok}/{total}"


def to_markdown(models: list[ModelSummary], baseline: str | None = None) -> str:
    models = _printable(models)
    head = ["Model", "Latency (ms)", "std (ms)", "min", "median", "max", "runs", "run averages (ms)"]
    if baseline:
        head.append(f"vs {safe(baseline)}")
    rows = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for m in models:
        nd = _decimals(m.mean_ms, 1)
        avgs = ", ".join(_f(r.avg_ms, nd + 1) if r.status == "ok" else r.status for r in m.runs)
        cells = [m.name, _f(m.mean_ms, nd), _f(m.std_ms, nd + 1), _f(m.min_ms, nd), _f(m.median_ms, nd),
                 _f(m.max_ms, nd), _runs_cell(m), avgs]
        if baseline:
            cells.append("-" if m.ratio_to_baseline is None else f"{m.ratio_to_baseline:.3f}")
        rows.append("| " + " | ".join(cells) + " |")
    notes = [f"- {m.name}: " + "; ".join(m.problems) for m in models if m.problems]
    return "\n".join(rows + ([""] + notes if notes else [])) + "\n"


def to_text(models: list[ModelSummary], baseline: str | None = None) -> str:
    models = _printable(models)
    head = ["model", "mean ms", "std", "min", "median", "max", "runs"]
    if baseline:
        head.append(f"x {safe(baseline)}")
    body = []
    for m in models:
        nd = _decimals(m.mean_ms, 2)
        row = [m.name, _f(m.mean_ms, nd), _f(m.std_ms, nd), _f(m.min_ms, nd), _f(m.median_ms, nd), _f(m.max_ms, nd),
               _runs_cell(m)]
        if baseline:
            row.append("-" if m.ratio_to_baseline is None else f"{m.ratio_to_baseline:.3f}")
        body.append(row)
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    lines = [fmt(head)] + [fmt(r) for r in body]
    for m in models:
        for p in m.problems:
            lines.append(f"  {m.name}: {p}")
    return "\n".join(lines) + "\n"


def to_csv(models: list[ModelSummary]) -> str:
    models = _printable(models)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["model", "run", "status", "avg_ms", "count", "mean_ms", "std_ms", "min_ms", "median_ms", "max_ms",
                "ratio_to_baseline", "error"])
    num = lambda v: "" if v is None else f"{v:.4f}"  # noqa: E731
    for m in models:
        for r in m.runs:
            w.writerow([m.name, r.k, r.status, num(r.avg_ms), "" if r.count is None else r.count,
                        num(m.mean_ms), num(m.std_ms), num(m.min_ms), num(m.median_ms), num(m.max_ms),
                        num(m.ratio_to_baseline), r.error or ""])
    return buf.getvalue()


def to_json(models: list[ModelSummary], baseline: str | None = None) -> dict:
    return {"baseline": baseline, "models": [m.as_dict() for m in models]}
