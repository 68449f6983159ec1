"""The benchmark_model log parser: every format on logs written here, then the seed's
Pixel-1 logs (logs/amc-pixel1-2018 in the repo) and every log in the shared fixtures when
they are present."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from amc_tf.cli import main
from bench_helpers import FIXTURES, current_log, log_2018, prefixed
from amc_tf.benchmarks.logparse import parse_file, parse_text

PREFIXES = ["none", "info", "info_file", "logcat", "logcat_brief", "crlf"]


@pytest.mark.parametrize("style", PREFIXES)
def test_current_format_under_prefix(style):
    text = prefixed(current_log(memory="Memory footprint delta from the start of the tool (MB): init=3.75 overall=12.1914"), style)
    r = parse_text(text)
    assert r.status == "ok" and r.failed is False and r.error is None
    assert r.format == "tflite"
    assert r.inference_avg_us == pytest.approx(4060.2)
    assert r.warmup_avg_us == pytest.approx(4333.33)
    assert (r.init_us, r.first_us) == (1234, 5100)
    assert (r.count, r.warmup_count) == (5, 3)
    assert (r.std_us, r.min_us, r.max_us) == (80, 3950, 4200)
    assert r.memory_mb == pytest.approx(12.1914) and r.memory_init_mb == pytest.approx(3.75)
    assert r.graph == "/data/local/tmp/m.tflite" and r.num_threads == 1


def test_2018_format_takes_the_precise_stat_average():
    r = parse_text(log_2018())
    assert r.format == "2018" and r.ok
    # the summary prints a truncated integer (68307); the stat line keeps 68307.7
    assert r.inference_avg_us == pytest.approx(68307.7)
    assert r.warmup_avg_us == pytest.approx(68459.8)
    assert r.init_us == pytest.approx(26466)  # "Initialized session in 0.026466s"
    assert r.first_us == 74794  # first warm-up inference
    assert (r.count, r.warmup_count, r.std_us, r.min_us, r.max_us) == (200, 100, 758, 66997, 71141)
    assert r.memory_mb is None  # "Memory (bytes): count=300" is the op profiler's, not a footprint


def test_2018_summary_alone_still_gives_the_average():
    text = "\n".join(l for l in log_2018().split("\n") if "count=" not in l)
    r = parse_text(text)
    assert r.ok and r.inference_avg_us == 68307 and r.warmup_avg_us == pytest.approx(68459.8)
    assert r.count is None


def test_tf21_average_line_with_init():
    text = ("STARTING!\nRunning benchmark for at least 1 iterations and at least 0.5 seconds\ncount=3 first=900 curr=800 "
            "min=790 max=900 avg=830 std=40\n\nRunning benchmark for at least 50 iterations and at least 1 seconds\n"
            "count=50 first=800 curr=805 min=780 max=850 avg=801.5 std=11\n\n"
            "Average inference timings in us: Warmup: 830, Init: 15320, Inference: 801\n")
    r = parse_text(text)
    assert r.format == "2018" and r.ok
    assert (r.inference_avg_us, r.init_us, r.warmup_avg_us, r.count) == (801.5, 15320, 830, 50)


@pytest.mark.parametrize("avg,expected", [("2.95034e+06", 2950340.0), ("1.5E+03", 1500.0), ("7.25e-01", 0.725)])
def test_scientific_notation(avg, expected):
    text = current_log(timed=(50, 2990275, 2913402, 2727568, 3189954, avg, 109798), summary_avg=avg)
    r = parse_text(text)
    assert r.ok and r.inference_avg_us == pytest.approx(expected)


@pytest.mark.parametrize("line,count,value", [("count=1 curr=3512391", 1, 3512391), ("count=4 curr=250(all same)", 4, 250)])
def test_single_or_identical_samples(line, count, value):
    text = current_log().replace("count=5 first=4100 curr=4050 min=3950 max=4200 avg=4060.2 std=80", line)
    r = parse_text(text)
    assert r.ok and r.count == count
    assert (r.inference_avg_us, r.min_us, r.max_us, r.std_us) == (value, value, value, 0)


def test_stray_terminal_noise():
    text = current_log()
    text = text.replace("STARTING!", "\x1b[?2004hshell@sailfish:/data/local/tmp $ STARTING!")
    text = text.replace("Log parameter values verbosely: [0]",
                        "Duplicate flags: num_threads\nWARNING: linker: /data/local/tmp/benchmark_model: unused DT entry\n^[[A^[[A")
    text = text.replace("Inference timings", "\x1b[0mInference timings")
    text += "INFO: Warning: Dropping ProfileBuffer event.\n\x1b[?2004l"
    r = parse_text(text)
    assert r.ok and r.inference_avg_us == pytest.approx(4060.2) and r.count == 5 and r.init_us == 1234


@pytest.mark.parametrize(
    "tail,reason",
    [
        ("ERROR: Failed to apply XNNPACK delegate.\nBenchmarking failed.\n", "Failed to apply XNNPACK delegate."),
        ("ERROR: Didn't find op for builtin opcode 'MUL' version '5'. An older version of this builtin might be "
         "supported.\nERROR: Registration failed.\nBenchmarking failed.\n", "Didn't find op for builtin opcode 'MUL'"),
        ("Benchmarking failed.\n", "gives no reason"),
    ],
    ids=["xnnpack", "opcode", "no-reason"],
)
def test_benchmarking_failed(tail, reason):
    text = "STARTING!\nGraph: [/data/local/tmp/m.tflite]\nLoaded model /data/local/tmp/m.tflite\n" + tail
    r = parse_text(text)
    assert r.failed and r.status == "failed" and not r.ok
    assert reason in r.error
    assert r.inference_avg_us is None and r.count is None


@pytest.mark.parametrize(
    "case",
    ["empty", "not-a-log", "cut-after-warmup", "cut-before-timed-stat", "cut-mid-summary"],
)
def test_no_result_is_reported_never_zero(case):
    full = current_log()
    lines = full.split("\n")
    text = {
        "empty": "",
        "not-a-log": "hello\nworld\n",
        "cut-after-warmup": "\n".join(lines[:10]),
        "cut-before-timed-stat": "\n".join(lines[:11]),
        "cut-mid-summary": "\n".join(lines[:10]) + "\nRunning benchmark for at least 5 iterations and",
    }[case]
    r = parse_text(text)
    assert r.status == "no_result" and r.failed and r.error.startswith("no result")
    assert r.inference_avg_us is None and r.count is None
    if case == "cut-after-warmup":
        assert r.warmup_count == 3 and "warm-up" in r.error


PROFILE_24 = """
Profiling Info for Benchmark Initialization:
============================== Run Order ==============================
\t             [node type]\t          [start]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]\t[times called]\t[Name]
\t         AllocateTensors\t            0.000\t    1.356\t    1.356\t100.000%\t100.000%\t     0.000\t        1\tAllocateTensors/0

============================== Summary by node type ==============================
\t             [Node type]\t  [count]\t  [avg ms]\t    [avg %]\t    [cdf %]\t  [mem KB]\t[times called]
\t         AllocateTensors\t        1\t     1.356\t   100.000%\t   100.000%\t     0.000\t        1

Operator-wise Profiling Info for Regular Benchmark Runs:
============================== Run Order ==============================
\t             [node type]\t          [start]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]\t[times called]\t[Name]
\t                 CONV_2D\t            0.066\t   87.754\t   60.957\t  60.0%\t  60.0%\t     0.000\t        1\t[MobilenetV1/Conv2d_0/Relu6]:0
\t       DEPTHWISE_CONV_2D\t           61.033\t   53.628\t   40.000\t  40.0%\t 100.0%\t     0.000\t        1\t[MobilenetV1/Conv2d_1_depthwise/Relu6]:1

============================== Summary by node type ==============================
\t             [Node type]\t  [count]\t  [avg ms]\t    [avg %]\t    [cdf %]\t  [mem KB]\t[times called]
\t                 CONV_2D\t        1\t    60.957\t    60.0%\t    60.0%\t     0.000\t        1
\t       DEPTHWISE_CONV_2D\t        1\t    40.000\t    40.0%\t   100.0%\t     0.000\t        1

Timings (microseconds): count=50 first=2989660 curr=2912978 min=2727203 max=3189476 avg=2.9499e+06 std=109770
Memory (bytes): count=0
"""

PROFILE_APK = """
============================== Run Order ==============================
\t             [node type]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]\t[times called]\t[Name]
\t                 CONV_2D\t    1.200\t    1.100\t 55.000%\t 55.000%\t     0.000\t        1\t[conv]:0
\t                 CONV_2D\t    0.700\t    0.600\t 30.000%\t 85.000%\t     0.000\t        1\t[conv_1]:1
\t                 SOFTMAX\t    0.300\t    0.300\t 15.000%\t100.000%\t     0.000\t        1\t[prob]:2
"""


@pytest.mark.parametrize("table,prefix", [(PROFILE_24, "none"), (PROFILE_APK, "none"), (PROFILE_APK, "logcat")],
                         ids=["tf24-with-start", "apk-no-start", "apk-logcat"])
def test_op_profiling_tables(table, prefix):
    r = parse_text(prefixed(current_log() + table, prefix))
    assert r.ok and r.inference_avg_us == pytest.approx(4060.2)  # the profile's Timings line is not the result
    if table is PROFILE_24:
        assert [(o.node_type, o.avg_ms, o.name) for o in r.ops] == [
            ("CONV_2D", 60.957, "MobilenetV1/Conv2d_0/Relu6"), ("DEPTHWISE_CONV_2D", 40.0, "MobilenetV1/Conv2d_1_depthwise/Relu6")]
        assert r.ops_by_type == {"CONV_2D": {"avg_ms": 60.957, "count": 1}, "DEPTHWISE_CONV_2D": {"avg_ms": 40.0, "count": 1}}
    else:
        assert [(o.node_type, o.avg_ms, o.name) for o in r.ops] == [
            ("CONV_2D", 1.1, "conv"), ("CONV_2D", 0.6, "conv_1"), ("SOFTMAX", 0.3, "prob")]
        assert r.ops_by_type == {"CONV_2D": {"avg_ms": 1.7, "count": 2}, "SOFTMAX": {"avg_ms": 0.3, "count": 1}}


LITERT_CPP = """INFO: [./litert/tools/benchmark_litert_model.cc:120] Loaded model
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=1055 first=1030 curr=470 min=440 max=1030 avg=470.2 std=20 p5=450 median=468 p95=490

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=2112 first=463 curr=459 min=442 max=979 avg=464.545 std=13 p5=460 median=462 p95=478

INFO: [./litert/tools/benchmark_litert_model.h:81] 
========== BENCHMARK RESULTS ==========
INFO: [./litert/tools/benchmark_litert_model.h:82] Model initialization: 4.48 ms
INFO: [./litert/tools/benchmark_litert_model.h:84] Warmup (first):       1.03 ms
INFO: [./litert/tools/benchmark_litert_model.h:86] Warmup (avg):         0.47 ms (1055 runs)
INFO: [./litert/tools/benchmark_litert_model.h:88] Inference (avg):      0.46 ms (2112 runs)
INFO: [./litert/tools/benchmark_litert_model.h:92] Inference (min):      0.44 ms
INFO: [./litert/tools/benchmark_litert_model.h:94] Inference (max):      0.98 ms
INFO: [./litert/tools/benchmark_litert_model.h:96] Inference (std):      0.01
INFO: [./litert/tools/benchmark_litert_model.h:103] Throughput:           525.55 MB/s
INFO: [./litert/tools/benchmark_litert_model.h:112] 
Memory Usage:
INFO: [./litert/tools/benchmark_litert_model.h:114] Init footprint:       8.94 MB
INFO: [./litert/tools/benchmark_litert_model.h:116] Overall footprint:    12.50 MB
INFO: [./litert/tools/benchmark_litert_model.h:125] ======================================
"""

LITERT_BLOCK_ONLY = """
========================================
 BENCHMARK RESULTS
========================================
Model initialization:  45.32 ms
Warmup (first):        120.45 ms
Warmup (avg):          98.76 ms (5 runs)
Inference (avg):       85.23 ms (50 runs)
Inference (min):       82.10 ms
Inference (max):       92.45 ms
Inference (median):    84.50 ms
Inference (std):       3.21 ms
Throughput:            12.45 MB/s
Fully accelerated:     True
========================================
"""


def test_litert_block_with_stat_lines_keeps_microsecond_precision():
    r = parse_text(LITERT_CPP)
    assert r.ok and r.format == "litert"
    assert r.inference_avg_us == pytest.approx(464.545) and r.count == 2112 and r.median_us == 462
    assert r.warmup_count == 1055 and r.warmup_avg_us == pytest.approx(470.2)
    assert r.init_us == pytest.approx(4480) and r.first_us == pytest.approx(1030)
    assert r.memory_mb == pytest.approx(12.5) and r.memory_init_mb == pytest.approx(8.94)


def test_litert_block_alone_is_read_in_milliseconds():
    r = parse_text(LITERT_BLOCK_ONLY)
    assert r.ok and r.format == "litert"
    assert r.inference_avg_us == pytest.approx(85230) and r.count == 50
    assert r.warmup_avg_us == pytest.approx(98760) and r.warmup_count == 5
    assert (r.min_us, r.max_us, r.median_us, r.std_us) == pytest.approx((82100, 92450, 84500, 3210))
    assert r.init_us == pytest.approx(45320) and r.first_us == pytest.approx(120450)


@pytest.mark.parametrize(
    "line,expected",
    [
        ("Peak memory footprint (MB): init=2.5 overall=30.25", 30.25),
        ("Memory footprint delta from the start of the tool (MB): init=4.21094 overall=46.0859", 46.0859),
        ("Overall peak memory footprint (MB) via periodic monitoring: 51.5\nMemory status at the end of exeution:\n"
         "- VmRSS              : 60 MB\n+ RssAnnon           : 40 MB", 51.5),
    ],
    ids=["peak-2020", "delta-2021", "periodic"],
)
def test_memory_variants(line, expected):
    r = parse_text(current_log(memory=line))
    assert r.ok and r.memory_mb == pytest.approx(expected)


# --- the shared fixtures -------------------------------------------------------------

PIXEL1_AVG_US = {
    "0.5flops": (68307.7, 68445.8, 69797.8),
    "0.5time": (63424.6, 63016.7, 63181.6),
    "0.75mobilenet": (73083.3, 72131.2, 72164.2),
    "mobilenet": (123162, 123034, 127212),
}
PIXEL1_REPO = Path(__file__).resolve().parents[1] / "logs" / "amc-pixel1-2018"  # the seed's logs, in the repo
FIXTURE_LOGS = sorted(PIXEL1_REPO.glob("*.txt")) + (
    sorted(p for p in FIXTURES.glob("*/*.txt") if p.parent.name != "pixel1-logs") if FIXTURES.is_dir() else [])


@pytest.mark.parametrize("path", FIXTURE_LOGS, ids=[f"{p.parent.name}/{p.name}" for p in FIXTURE_LOGS])
def test_every_fixture_log(path):
    r = parse_file(path)
    if "failed" in path.name:
        assert r.status == "failed" and r.error == "Benchmarking failed: Failed to apply NNAPI delegate."
        assert r.inference_avg_us is None
        return
    assert r.ok, r.error
    assert r.inference_avg_us > 0 and r.count > 0 and r.warmup_avg_us > 0 and r.init_us > 0
    if path.parent == PIXEL1_REPO:
        model, k = path.stem.rsplit("_run", 1)
        assert r.format == "2018"
        assert r.inference_avg_us == pytest.approx(PIXEL1_AVG_US[model][int(k) - 1])
        assert (r.count, r.warmup_count, r.num_threads) == (200, 100, 1)
        assert sum(e["count"] for e in r.ops_by_type.values()) == len(r.ops) in (30, 31)
        assert r.ops_by_type["CONV_2D"]["count"] == 15 and r.ops_by_type["DEPTHWISE_CONV_2D"]["count"] == 13
    elif path.name.startswith("NobuoTsukamoto"):
        assert (r.inference_avg_us, r.count, r.init_us, r.first_us) == (2950340.0, 50, 17187, 3512391)
        assert r.warmup_avg_us == 3512391  # from `count=1 curr=3512391`, not the 6-digit summary
        assert r.memory_mb == pytest.approx(46.0859)
        assert len(r.ops) == 31 and r.ops_by_type["CONV_2D"] == {"avg_ms": 2651.853, "count": 15}
        assert "AllocateTensors" not in r.ops_by_type  # initialization profile is not the model's
    elif path.name.startswith("tensorflow_issue_61946"):
        assert (r.inference_avg_us, r.count, r.init_us, r.first_us, r.warmup_count) == (116066, 50, 530, 124020, 5)
        assert r.memory_mb == pytest.approx(12.1914)


# --- the CLI ---------------------------------------------------------------------------


def test_cli_logs_parse_json(tmp_path):
    p = tmp_path / "m_run1.txt"
    p.write_text(prefixed(current_log(), "info"))
    res = CliRunner().invoke(main, ["logs", "parse", str(p), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["ok"] is True and d["inference_avg_us"] == pytest.approx(4060.2) and d["count"] == 5


def test_cli_logs_parse_failed_log_exits_3(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_text("STARTING!\nERROR: Failed to apply GPU delegate.\nBenchmarking failed.\n")
    res = CliRunner().invoke(main, ["logs", "parse", str(p)])
    assert res.exit_code == 3
    assert "status:            failed" in res.output and "Failed to apply GPU delegate." in res.output


def test_cli_logs_parse_missing_file_exits_2(tmp_path):
    res = CliRunner().invoke(main, ["logs", "parse", str(tmp_path / "nope.txt")])
    assert res.exit_code == 2 and "log not found" in res.output
