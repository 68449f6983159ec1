"""The study's outputs: one record per model x precision (study.json), the seed's table
(table.md, table.csv) and the trade-off picture (pareto.png)."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np

from amc_tf.benchmarks.runlog import atomic_write

TABLE_COLUMNS = ("Models", "Precision", "Top1 Acc (%)", "Top5 Acc (%)", "Latency (ms)", "MACs (M)", "Size (MB)")


def _classes(unit) -> np.ndarray | None:
    if not unit.shards:
        return None
    return np.concatenate([np.asarray(unit.shards[i]["top1_classes"], np.int64) for i in sorted(unit.shards)])


def record(unit, study, fp32_units: dict) -> dict:
    """One model x precision as study.json holds it; every figure says where it came from."""
    rep = unit.convert or {}
    rec = {"name": unit.model.name, "precision": unit.precision, "status": "ok", "error": None,
           "model": unit.model.path, "profile": unit.model.profile, "sha256": unit.sha256,
           "macs": rep.get("macs"), "params": rep.get("params"),
           "size_bytes": rep.get("artifacts", {}).get("tflite", {}).get("bytes"),
           "images": None, "evaluated": None, "skipped": None, "correct_top1": None, "correct_top5": None,
           "top1": None, "top5": None, "agreement": None, "latency_ms": None,
           "latency_source": study.options.latency.describe() if study.options.latency.kind != "none" else None,
           "node": None, "nodes": {}, "parity": None, "artifacts": os.path.relpath(unit.outdir, study.studydir),
           "timings": {k: (round(v, 3) if isinstance(v, float) else v) for k, v in unit.seconds.items()},
           "cached": dict(unit.cached), "sources": {}}
    rec["nodes"] = {k: sorted(n for n in v if n) for k, v in unit.nodes.items()}
    rec["node"] = (rec["nodes"].get("convert") or [None])[0]
    if rep:
        ver = rep.get("verification", {})
        rec["parity"] = {"passed": ver.get("passed"), "reference": ver.get("reference"),
                         "max_abs_diff": max((p["max_abs_diff"] for p in ver.get("pairs", {}).values()), default=None)}
        rec["sources"]["macs"] = "amc_tf.core.flops on the checkpoint's network (as amc-tf profile)"
        rec["sources"]["size_bytes"] = f"{rec['artifacts']}/{rep['artifacts']['tflite']['path']}"
        rec["sources"]["parity"] = "the conversion's self-check (report.json verification)"
    shards_expected = len(study._chunks())
    if unit.error is None and study.images is not None and len(unit.shards) == shards_expected and shards_expected:
        parts = [unit.shards[i] for i in sorted(unit.shards)]
        rec["images"] = sum(p["images"] for p in parts)
        rec["evaluated"] = ev = sum(p["evaluated"] for p in parts)
        rec["skipped"] = sum(p["skipped"] for p in parts)
        rec["skipped_files"] = [f for p in parts for f in p["skipped_files"]]
        rec["correct_top1"] = c1 = sum(p["correct_top1"] for p in parts)
        rec["correct_top5"] = c5 = sum(p["correct_top5"] for p in parts)
        rec["top1"] = c1 / ev if ev else None
        rec["top5"] = c5 / ev if ev else None
        rec["sources"]["top1"] = (f"{rep['artifacts']['tflite']['path']} on {ev} images of {study.options.images} "
                                  f"(pil preprocessing, as amc-tf eval), {len(parts)} chunk(s) merged image by image")
        ref = fp32_units.get(unit.model.name)
        if ref is not None and ref.error is None and len(ref.shards) == shards_expected:
            a, b = _classes(unit), _classes(ref)
            both = (a >= 0) & (b >= 0)
            rec["agreement"] = float(np.mean(a[both] == b[both])) if both.any() else None
            rec["sources"]["agreement"] = "top-1 class equal to the fp32 model's, image by image"
        else:
            rec["sources"]["agreement"] = "not measured: fp32 is not among --precision"
        rec["top1_classes"] = f"{rec['artifacts']}/top1_classes.npy"
        _save_npy(unit.outdir / "top1_classes.npy", _classes(unit))
    elif study.images is None:
        rec["sources"]["top1"] = "not measured: no --images"
    if unit.latency is not None and unit.error is None:
        rec["latency_ms"] = unit.latency.get("latency_ms")
        if study.options.latency.kind == "lut":
            rec["sources"]["latency_ms"] = f"predicted by the LUT {study.options.latency.lut} (fp32 per-layer table)"
        else:
            node = (rec["nodes"].get("latency") or ["?"])[0]
            serial = f" on the phone {unit.latency.get('serial')}" if study.options.latency.kind == "adb" else ""
            rec["sources"]["latency_ms"] = (f"measured{serial} with the Pixel-1 protocol on {node}; logs in "
                                            f"{rec['artifacts']}/latency/")
            load = unit.latency.get("load_before")
            if study.options.latency.kind == "local":
                rec["latency_note"] = ("timed alone (no other task of the study running)"
                                       + (f"; the machine's 1-min load average before was {load:.2f}"
                                          if load is not None else ""))
    elif study.options.latency.kind == "none":
        rec["sources"]["latency_ms"] = "not measured (--latency none)"
    if unit.error is not None:
        rec["status"], rec["error"] = "failed", unit.error
    return rec


def _save_npy(path: Path, array: np.ndarray) -> None:
    """Each measured image's top-1 class (-1: unreadable), in dataset order; written atomically."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


def records(units: list, study) -> list[dict]:
    fp32 = {u.model.name: u for u in units if u.precision == "fp32"}
    return [record(u, study, fp32) for u in units]


def _fmt(v, scale=1.0, nd=2) -> str:
    return "" if v is None else f"{v * scale:.{nd}f}"


def table_rows(recs: list[dict]) -> list[list[str]]:
    return [[r["name"], r["precision"], _fmt(r["top1"], 100), _fmt(r["top5"], 100), _fmt(r["latency_ms"], 1, 3),
             _fmt(r["macs"], 1e-6, 1), _fmt(r["size_bytes"], 1e-6, 3)] for r in recs if r["status"] == "ok"]


def table_md(recs: list[dict]) -> str:
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    lines += ["| " + " | ".join(c or "-" for c in row) + " |" for row in table_rows(recs)]
    failed = [r for r in recs if r["status"] != "ok"]
    if failed:
        lines += ["", *[f"- failed: {r['name']} {r['precision']}: {r['error']}" for r in failed]]
    return "\n".join(lines) + "\n"


def table_csv(recs: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(TABLE_COLUMNS)
    w.writerows(table_rows(recs))
    return buf.getvalue()


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats (lower or equal cost and higher or equal top-1, one strictly)."""
    front = []
    for i, (c, a) in enumerate(points):
        if not any((c2 <= c and a2 >= a) and (c2 < c or a2 > a) for j, (c2, a2) in enumerate(points) if j != i):
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def write_pareto(recs: list[dict], path: Path) -> str | None:
    """top-1 against latency (or MACs without latency); None when there is nothing to plot."""
    ok = [r for r in recs if r["status"] == "ok" and r["top1"] is not None]
    use_latency = ok and all(r["latency_ms"] is not None for r in ok)
    pts = [((r["latency_ms"] if use_latency else r["macs"] / 1e6), 100 * r["top1"]) for r in ok]
    if not pts:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    front = pareto_front(pts)
    fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
    ax.scatter([p[0] for p in pts], [p[1] for p in pts], color="#888888", label="model x precision", zorder=2)
    ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "-o", color="#d62728", label="Pareto front",
            zorder=3)
    for r, (x, y) in zip(ok, pts):
        ax.annotate(f"{r['name']} {r['precision']}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("latency (ms)" if use_latency else "MACs (M)")
    ax.set_ylabel("top-1 (%)")
    ax.set_title("amc-tf study: top-1 against " + ("latency" if use_latency else "MACs"))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
    return "latency" if use_latency else "macs"


def write_outputs(units: list, study, extra: dict) -> dict:
    recs = records(units, study)
    out = {"records": recs, **extra, "notes": study.notes}
    d = study.studydir
    atomic_write(d / "study.json", json.dumps(out, indent=2) + "\n")
    atomic_write(d / "table.md", table_md(recs))
    atomic_write(d / "table.csv", table_csv(recs))
    out["pareto_axis"] = write_pareto(recs, d / "pareto.png")
    return out
