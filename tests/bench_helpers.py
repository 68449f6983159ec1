"""Shared helpers for the benchmark tests: where the shared fixtures live, and writers
of benchmark_model logs in each format (so the parser is tested without the fixtures)."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
FAKES = Path(__file__).resolve().parent / "fakes"


def stat_line(count, first, curr, mn, mx, avg, std, extra=""):
    return f"count={count} first={first} curr={curr} min={mn} max={mx} avg={avg} std={std}{extra}"


def current_log(
    *,
    init=1234,
    first=5100,
    warm=(3, 5100, 4000, 3900, 5100, "4333.33", 540),
    timed=(5, 4100, 4050, 3950, 4200, "4060.2", 80),
    summary_avg=None,
    warm_summary=None,
    memory=None,
    graph="/data/local/tmp/m.tflite",
    threads=1,
):
    """A current-format (TF 2.x) benchmark_model log, no prefixes."""
    w = stat_line(*warm)
    t = stat_line(*timed)
    lines = [
        "STARTING!",
        "Log parameter values verbosely: [0]",
        f"Min num runs: [{timed[0]}]",
        f"Num threads: [{threads}]",
        f"Graph: [{graph}]",
        f"Loaded model {graph}",
        f"Initialized session in {init / 1000:g}ms.",
        f"Running benchmark for at least {warm[0]} iterations and at least 0 seconds but terminate if exceeding 100000 seconds.",
        w,
        "",
        f"Running benchmark for at least {timed[0]} iterations and at least 0 seconds but terminate if exceeding 100000 seconds.",
        t,
        "",
        f"Inference timings in us: Init: {init}, First inference: {first}, "
        f"Warmup (avg): {warm_summary or warm[5]}, Inference (avg): {summary_avg or timed[5]}",
    ]
    if memory:
        lines.append(memory)
    return "\n".join(lines) + "\n"


def log_2018(warm_avg="68459.8", avg="68307.7", no_stats="68307", init_s="0.026466", count=200):
    p = "native : benchmark_tflite_model.cc:{} "
    return "\n".join([
        "native : commandlineflags.cc:1511 Ignoring RegisterValidateFunction() for flag pointer 0x5b04b76330: no flag found at that address",
        p.format(480) + "STARTING!",
        p.format(521) + "Graph: [/data/local/tmp/0.5amc_round8.tflite]",
        p.format(526) + f"Num runs: [{count}]",
        p.format(528) + "Num threads: [1]",
        p.format(531) + "Warmup runs: [100]",
        p.format(560) + f"Initialized session in {init_s}s",
        p.format(412) + "Running benchmark for 100 iterations with detailed stat logging:",
        p.format(440) + f"count=100 first=74794 curr=67812 min=66944 max=74794 avg={warm_avg} std=1061",
        "",
        p.format(412) + f"Running benchmark for {count} iterations with detailed stat logging:",
        p.format(440) + f"count={count} first=67444 curr=68656 min=66997 max=71141 avg={avg} std=758",
        "",
        p.format(590) + f"Average inference timings in us: Warmup: {warm_avg}, no stats: {no_stats}",
        "native : stat_summarizer.cc:358 Number of nodes executed: 30",
        "Timings (microseconds): count=300 first=74761 curr=68623 min=66908 max=74761 avg=68320.7 std=871",
        "Memory (bytes): count=300 curr=0(all same)",
        "",
    ])


def prefixed(text: str, style: str) -> str:
    """Add a per-line prefix as benchmark_model builds / logcat print them."""
    out = []
    for i, line in enumerate(text.split("\n")):
        if style == "none" or line == "":
            out.append(line)
        elif style == "info":
            out.append("INFO: " + line)
        elif style == "info_file":
            out.append(f"INFO: [./tflite/tools/benchmark/benchmark_model.cc:{100 + i}] " + line)
        elif style == "logcat":
            out.append(f"07-21 10:20:{i % 60:02d}.{i:03d}  4242  4260 I tflite  : " + line)
        elif style == "logcat_brief":
            out.append("I/tflite  ( 4242): " + line)
        elif style == "crlf":
            out.append(line + "\r")
        else:
            raise ValueError(style)
    return "\n".join(out)


def write_runs(logdir: Path, name: str, avgs_us: list, start_k: int = 1) -> list[Path]:
    """Write `<name>_run<k>.txt` logs whose timed averages are `avgs_us` (None = failed run)."""
    logdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, avg in enumerate(avgs_us, start=start_k):
        p = logdir / f"{name}_run{k}.txt"
        if avg is None:
            p.write_text("STARTING!\nGraph: [x.tflite]\nERROR: Didn't find op for builtin opcode 'MUL' version '5'\nBenchmarking failed.\n")
        else:
            p.write_text(current_log(timed=(200, avg, avg, avg - 10, avg + 10, f"{avg:g}", 5)))
        paths.append(p)
    return paths


def install_fake(name: str, dest_dir: Path) -> Path:
    """Copy a stand-in from tests/fakes into dest_dir, executable.

    The copy's shebang names this interpreter with -S (the stand-ins need only the
    standard library): `/usr/bin/env python3` may be a slow version-manager shim, and
    the adb tests start the stand-ins a few hundred times.
    """
    import sys

    dest_dir.mkdir(parents=True, exist_ok=True)
    src = (FAKES / name).read_text()
    body = src.split("\n", 1)[1] if src.startswith("#!") else src
    dest = dest_dir / name
    dest.write_text(f"#!{sys.executable} -S\n{body}")
    dest.chmod(0o755)
    return dest
