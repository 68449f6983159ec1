"""The local target end to end on a tiny .tflite built here with TensorFlow: exact
invocation counts, one fresh interpreter per run, logs in benchmark_model's format that
the parser reads back, and a summary that agrees with the logs."""

from __future__ import annotations

import json
import os
import statistics

import pytest
from click.testing import CliRunner

import amc_tf.benchmarks.local as local
from amc_tf.cli import main
from bench_helpers import install_fake
from amc_tf.benchmarks.logparse import parse_file
from amc_tf.benchmarks.protocol import Protocol

REAL_FACTORY = local.make_interpreter


@pytest.fixture(scope="session")
def tiny_tflite(tmp_path_factory):
    """A two-conv float model (16x16x3 -> 4), a few KB, built with TF directly."""
    import tensorflow as tf

    class Tiny(tf.Module):
        def __init__(self):
            self.w1 = tf.Variable(tf.random.stateless_normal([3, 3, 3, 8], seed=[1, 2]))
            self.w2 = tf.Variable(tf.random.stateless_normal([1, 1, 8, 4], seed=[3, 4]))

        @tf.function(input_signature=[tf.TensorSpec([1, 16, 16, 3], tf.float32)])
        def __call__(self, x):
            y = tf.nn.relu(tf.nn.conv2d(x, self.w1, 2, "SAME"))
            return tf.reduce_mean(tf.nn.conv2d(y, self.w2, 1, "SAME"), axis=[1, 2])

    m = Tiny()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([m.__call__.get_concrete_function()], m)
    path = tmp_path_factory.mktemp("model") / "tiny.tflite"
    path.write_bytes(conv.convert())
    return path


class Counting:
    """Wraps the real interpreter factory: counts interpreters, invokes and what they were asked for.
    Each run happens in a forked child process, so the tallies live in a file the children append to."""

    def __init__(self):
        import tempfile

        fd, self._path = tempfile.mkstemp(prefix="amc-tf-counting-")
        os.close(fd)

    def _log(self, *item):
        with open(self._path, "a") as fh:
            fh.write(json.dumps(item) + "\n")

    def _items(self, kind):
        with open(self._path) as fh:
            return [json.loads(line)[1:] for line in fh if json.loads(line)[0] == kind]

    @property
    def interpreters(self):
        return len(self._items("interpreter"))

    @property
    def invokes(self):
        return len(self._items("invoke"))

    @property
    def calls(self):
        return [tuple(c[:2]) for c in self._items("interpreter")]

    @property
    def affinity(self):
        return [set(c[2]) for c in self._items("interpreter")]

    def __call__(self, model_path, threads, delegate):
        self._log("interpreter", threads, delegate, sorted(os.sched_getaffinity(0)))
        real = REAL_FACTORY(model_path, threads, delegate)
        outer = self

        class Wrapped:
            def __getattr__(self, name):
                return getattr(real, name)

            def invoke(self):
                outer._log("invoke")
                return real.invoke()

        return Wrapped()


def _bench(args, monkeypatch, counter=None):
    if counter is not None:
        monkeypatch.setattr(local, "make_interpreter", counter)
    return CliRunner().invoke(main, ["bench"] + [str(a) for a in args])


@pytest.mark.parametrize("warmup,runs,repeats", [(3, 5, 2), (0, 1, 1), (7, 4, 3)])
def test_inprocess_exact_invocation_counts(tiny_tflite, tmp_path, monkeypatch, warmup, runs, repeats):
    counter = Counting()
    res = _bench([tiny_tflite, "--warmup", warmup, "--runs", runs, "--repeats", repeats, "--logdir", tmp_path],
                 monkeypatch, counter)
    assert res.exit_code == 0, res.output
    assert counter.interpreters == repeats  # a fresh interpreter per run
    assert counter.invokes == repeats * (warmup + runs)
    logs = sorted(tmp_path.glob("tiny_run*.txt"))
    assert [p.name for p in logs] == [f"tiny_run{k}.txt" for k in range(1, repeats + 1)]
    for p in logs:
        r = parse_file(p)
        assert r.ok and r.count == runs and r.warmup_count == warmup and r.num_threads == 1
        assert r.inference_avg_us > 0 and r.min_us <= r.inference_avg_us <= r.max_us


def test_cli_json_summary_agrees_with_logs(tiny_tflite, tmp_path, monkeypatch):
    counter = Counting()
    res = _bench([tiny_tflite, "--warmup", 3, "--runs", 5, "--repeats", 3, "--logdir", tmp_path, "--json"],
                 monkeypatch, counter)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    (model,) = out["models"]
    parsed = [parse_file(tmp_path / f"tiny_run{k}.txt") for k in (1, 2, 3)]
    avgs_ms = [r.inference_avg_us / 1000 for r in parsed]
    assert [r["avg_ms"] for r in model["runs"]] == pytest.approx(avgs_ms)
    assert model["mean_ms"] == pytest.approx(statistics.fmean(avgs_ms))
    assert model["std_ms"] == pytest.approx(statistics.stdev(avgs_ms))
    assert model["median_ms"] == pytest.approx(statistics.median(avgs_ms))
    assert model["complete"] is True
    # the runner's own record (manifest) matches the logs too
    manifest = json.loads((tmp_path / "tiny.bench.json").read_text())
    assert manifest["expected_runs"] == 3 and manifest["ok"] is True
    assert [r["inference_avg_us"] for r in manifest["runs"]] == pytest.approx([r.inference_avg_us for r in parsed])
    assert manifest["protocol"] == {"warmup": 3, "runs": 5, "repeats": 3, "threads": 1, "delegate": "xnnpack",
                                    "taskset": None, "max_secs": 100000}
    assert manifest["runner"]["run_timeout_s"] == 120.0 + 2 * 8  # derived from the protocol
    assert manifest["runner"]["kind"] == "in-process"
    # progress went to stderr, and logs were written atomically (no temp files left)
    assert "tiny: run 3/3" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.bench.json", "tiny_run1.txt", "tiny_run2.txt", "tiny_run3.txt"]


@pytest.mark.parametrize("delegate", ["xnnpack", "none"])
def test_delegate_maps_to_interpreter(tiny_tflite, tmp_path, monkeypatch, delegate):
    counter = Counting()
    res = _bench([tiny_tflite, "--warmup", 1, "--runs", 2, "--repeats", 1, "--threads", 2, "--delegate", delegate,
                  "--logdir", tmp_path], monkeypatch, counter)
    assert res.exit_code == 0, res.output
    assert counter.calls == [(2, delegate)]
    r = parse_file(tmp_path / "tiny_run1.txt")
    assert r.ok and r.num_threads == 2


def test_delegate_none_disables_default_delegates(tiny_tflite):
    from ai_edge_litert.interpreter import OpResolverType

    seen = {}
    import ai_edge_litert.interpreter as li

    real = li.Interpreter

    def spy(**kw):
        seen.update(kw)
        return real(**kw)

    li.Interpreter = spy
    try:
        local.make_interpreter(str(tiny_tflite), 1, "none")
    finally:
        li.Interpreter = real
    assert seen["experimental_op_resolver_type"] == OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    assert seen["num_threads"] == 1


def test_taskset_pins_the_run_and_restores_affinity(tiny_tflite, tmp_path, monkeypatch):
    counter = Counting()
    before = os.sched_getaffinity(0)
    res = _bench([tiny_tflite, "--warmup", 1, "--runs", 2, "--repeats", 2, "--taskset", "1", "--logdir", tmp_path],
                 monkeypatch, counter)
    assert res.exit_code == 0, res.output
    assert counter.affinity == [{0}, {0}]
    assert os.sched_getaffinity(0) == before


def test_host_benchmark_binary_gets_exact_count_flags(tiny_tflite, tmp_path):
    binary = install_fake("benchmark_model", tmp_path / "bin")
    logdir = tmp_path / "logs"
    res = CliRunner().invoke(main, ["bench", str(tiny_tflite), "--benchmark-binary", str(binary), "--warmup", "3",
                                    "--runs", "5", "--logdir", str(logdir), "--json"])
    assert res.exit_code == 0, res.output
    calls = [json.loads(l) for l in (binary.parent / ".fake_bm_calls.jsonl").read_text().splitlines()]
    assert len(calls) == 3
    assert calls[0]["argv"] == [f"--graph={tiny_tflite}", "--num_threads=1", "--warmup_runs=3", "--warmup_min_secs=0",
                                "--num_runs=5", "--min_secs=0", "--max_secs=100000", "--use_xnnpack=true"]
    for k in (1, 2, 3):
        r = parse_file(logdir / f"tiny_run{k}.txt")
        # without --min_secs=0 the stand-in (like the real tool) would run 1 s worth: ~490 runs
        assert r.ok and r.count == 5 and r.warmup_count == 3
        assert r.inference_avg_us == pytest.approx(2000 * (1 + 0.01 * k))
    (model,) = json.loads(res.stdout)["models"]
    assert model["mean_ms"] == pytest.approx(2.04)


def test_host_binary_failing_at_run_2_keeps_the_others(tiny_tflite, tmp_path, monkeypatch):
    binary = install_fake("benchmark_model", tmp_path)
    monkeypatch.setenv("FAKE_BM_FAIL_AT", "2")
    res = CliRunner().invoke(main, ["bench", str(tiny_tflite), "--benchmark-binary", str(binary), "--warmup", "1",
                                    "--runs", "2", "--logdir", str(tmp_path / "logs"), "--json"])
    assert res.exit_code == 3
    runs = json.loads(res.stdout)["runs"][0]["runs"]
    assert [r["status"] for r in runs] == ["ok", "failed", "ok"]
    assert runs[1]["returncode"] == 1 and "Failed to apply XNNPACK delegate." in runs[1]["error"]
    assert "not every run succeeded" in res.stderr and "run 2 failed" in res.stderr


def _tflite_like(path):
    path.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))
    return path


@pytest.mark.parametrize(
    "case,msg",
    [
        ("missing-model", "model not found"),
        ("not-tflite", "not a TFLite model"),
        ("gpu-local", "--delegate gpu is only available with --target adb"),
        ("nnapi-local", "--delegate nnapi is only available with --target adb"),
        ("serial-local", "--serial is only for --target adb"),
        ("cleanup-local", "--cleanup is only for --target adb"),
        ("zero-runs", "--runs must be >= 1"),
        ("negative-warmup", "--warmup must be >= 0"),
        ("bad-taskset", "--taskset wants a non-zero hex CPU mask"),
        ("zero-taskset", "--taskset wants a non-zero hex CPU mask"),
        ("name-two-models", "--name needs exactly one MODEL"),
        ("missing-binary", "benchmark binary not found"),
        ("adb-no-binary", "--target adb needs --benchmark-binary"),
        ("bad-name", "is not usable in a log file name"),
        ("unknown-baseline", "--baseline 'nope' is neither one of the models"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, case, msg):
    m = _tflite_like(tmp_path / "m.tflite")
    (tmp_path / "other").mkdir()
    m2 = _tflite_like(tmp_path / "other" / "m.tflite")
    args = {
        "missing-model": [tmp_path / "nope.tflite"],
        "not-tflite": [tmp_path / "x.tflite"],
        "gpu-local": [m, "--delegate", "gpu"],
        "nnapi-local": [m, "--delegate", "nnapi"],
        "serial-local": [m, "--serial", "S1"],
        "cleanup-local": [m, "--cleanup"],
        "zero-runs": [m, "--runs", "0"],
        "negative-warmup": [m, "--warmup", "-1"],
        "bad-taskset": [m, "--taskset", "big"],
        "zero-taskset": [m, "--taskset", "0"],
        "name-two-models": [m, m2, "--name", "x"],
        "missing-binary": [m, "--benchmark-binary", tmp_path / "nope"],
        "adb-no-binary": [m, "--target", "adb"],
        "bad-name": [m, "--name", "a/b"],
        "unknown-baseline": [m, "--baseline", "nope"],
    }[case]
    (tmp_path / "x.tflite").write_text("this is not a flatbuffer")
    res = CliRunner().invoke(main, ["bench"] + [str(a) for a in args] + ["--logdir", str(tmp_path / "logs")])
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: ") and msg in res.output and res.output.count("\n") == 1
    assert not list((tmp_path / "logs").glob("*.txt"))  # nothing was run


def test_existing_logs_need_force(tiny_tflite, tmp_path, monkeypatch):
    args = [tiny_tflite, "--warmup", 1, "--runs", 1, "--repeats", 3, "--logdir", tmp_path]
    assert _bench(args, monkeypatch).exit_code == 0
    res = _bench(args, monkeypatch)
    assert res.exit_code == 2 and "already in" in res.output and "--force" in res.output
    # --force with fewer repeats replaces the old logs, leaving no stale run 3 behind
    res = _bench([tiny_tflite, "--warmup", 1, "--runs", 1, "--repeats", 2, "--logdir", tmp_path, "--force"], monkeypatch)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.glob("*.txt")) == ["tiny_run1.txt", "tiny_run2.txt"]


def test_baseline_ratio_between_two_models(tiny_tflite, tmp_path, monkeypatch):
    twin = tmp_path / "twin.tflite"
    twin.write_bytes(tiny_tflite.read_bytes())
    res = _bench([tiny_tflite, twin, "--warmup", 2, "--runs", 3, "--repeats", 2, "--logdir", tmp_path / "logs",
                  "--baseline", "tiny", "--json"], monkeypatch)
    assert res.exit_code == 0, res.output
    by = {m["name"]: m for m in json.loads(res.stdout)["models"]}
    assert set(by) == {"tiny", "twin"} and by["tiny"]["ratio_to_baseline"] == 1.0
    assert by["twin"]["ratio_to_baseline"] == pytest.approx(by["twin"]["mean_ms"] / by["tiny"]["mean_ms"])


def test_protocol_defaults_are_pixel1():
    p = Protocol()
    assert (p.warmup, p.runs, p.repeats, p.threads, p.delegate, p.taskset) == (100, 200, 3, 1, "xnnpack", None)
    assert p.benchmark_model_args("/data/local/tmp/m.tflite") == [
        "--graph=/data/local/tmp/m.tflite", "--num_threads=1", "--warmup_runs=100", "--warmup_min_secs=0",
        "--num_runs=200", "--min_secs=0", "--max_secs=100000", "--use_xnnpack=true"]


def test_stat_line_matches_benchmark_model():
    assert local.Stat([]).line() == "count=0"
    assert local.Stat([250.4]).line() == "count=1 curr=250"
    assert local.Stat([250.0, 250.2, 250.9]).line() == "count=3 curr=250(all same)"
    s = local.Stat([1000.0, 3000.0, 2950340.0])
    assert s.line() == "count=3 first=1000 curr=2950340 min=1000 max=2950340 avg=984780 std=1389861"
    assert local.Stat([2000000.0, 3900000.0]).line().split()[5] == "avg=2.95e+06"
