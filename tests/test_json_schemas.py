"""Every JSON file read back (report.json, `<name>.bench.json` manifests, latency LUTs) is bounded
and validated on load: a file of the wrong shape, with a huge integer, NaN or an overflowing
value, is one `error:` line naming the file and the field, exit 2, never a traceback, exit 70
or an Infinity printed with exit 0."""

from __future__ import annotations

import copy
import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amc_tf.core.errors import AmcError
from amc_tf.core.jsonfile import MAX_INT_DIGITS, MAX_LUT_BYTES, JsonFileError, load_json, parse_json
from amc_tf.core.outdir import read_outdir
from amc_tf.core.profiles import profile_spec
from cli_run import one_error_line, run


def _report() -> dict:
    return {"network": profile_spec("0.5flops").to_dict(),
            "artifacts": {"tflite": {"path": "model.tflite"}, "saved_model": {"path": "saved_model"},
                          "slim_checkpoint": {"prefix": "slim/model.ckpt"}},
            "source": {"file": "x.pth", "frontend": "pytorch"}}


def _outdir(tmp_path, report, name="out"):
    out = tmp_path / name
    out.mkdir(exist_ok=True)
    (out / "report.json").write_text(report if isinstance(report, str) else json.dumps(report))
    (out / "model.tflite").write_bytes(b"\0\0\0\0TFL3")
    return out


def _mutate(fn):
    r = _report()
    fn(r)
    return r


BAD_REPORTS = {
    "family": (_mutate(lambda r: r["network"].update(family="x")),
               "network.family: 'x' is not one of ['mobilenet_v1', 'mobilenet_v2']"),
    "stride-0": (_mutate(lambda r: r["network"]["blocks"][3].update(stride=0)), "network.blocks[3].stride: 0 is not one of"),
    "artifacts-list": (_mutate(lambda r: r.update(artifacts=[])), "artifacts: [] is not of type 'object'"),
    "no-network": (_mutate(lambda r: r.pop("network")), "the top level: 'network' is a required property"),
    "input-size": (_mutate(lambda r: r["network"].update(input_size=10 ** 9)), "network.input_size: 1000000000 is greater"),
    "path-outside": (_mutate(lambda r: r["artifacts"]["tflite"].update(path="../../etc/passwd")),
                     "artifacts.tflite.path: '../../etc/passwd' is not a path inside"),
    "huge-int": ('{"network": {"stem_ch": ' + "9" * 400 + "}}", "an integer of 400 digits"),
    "nan": ('{"network": {"bn_eps": NaN}}', "NaN is not a number JSON allows"),
    "overflow": ('{"network": {"bn_eps": 1e999}}', "overflows a float"),
    "not-json": ("{", "not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(BAD_REPORTS))
def test_a_bad_report_names_the_file_and_the_field(tmp_path, case):
    report, expected = BAD_REPORTS[case]
    out = _outdir(tmp_path, report)
    with pytest.raises(JsonFileError) as info:
        read_outdir(out)
    assert str(info.value).startswith(f"{out / 'report.json'}: ")
    assert expected in str(info.value)


def test_a_good_report_still_reads(tmp_path):
    out = _outdir(tmp_path, _report())
    assert read_outdir(out).spec.family == "mobilenet_v1"


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-10 ** 12, 10 ** 12) | st.floats(allow_nan=False, allow_infinity=False)
                     | st.text(max_size=8), lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3),
                     max_leaves=8)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


ALL_PATHS = [p for p in _paths(_report()) if p]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(ALL_PATHS), value=_JSON)
def test_any_field_replaced_by_any_value_is_read_or_refused_cleanly(tmp_path, where, value):
    r = copy.deepcopy(_report())
    node = r
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    out = _outdir(tmp_path, r)
    try:
        spec = read_outdir(out).spec
        spec.layers()  # what the commands compute from it
        _ = [layer.stride for layer in spec.layers()]
    except AmcError:
        pass  # a clean refusal (exit 2); any other exception is a bug the CLI would report as exit 70


def test_a_bad_report_through_a_command_is_one_line_exit_2(tmp_path):
    out = _outdir(tmp_path, BAD_REPORTS["family"][0])
    (tmp_path / "imgs").mkdir()
    proc = run("compare", out, "--images", tmp_path / "imgs", "--no-latency")
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc)
    assert line == (f"error: {out / 'report.json'}: network.family: 'x' is not one of "
                    "['mobilenet_v1', 'mobilenet_v2']")


def test_json_bounds():
    assert parse_json("1" * MAX_INT_DIGITS, "f") == int("1" * MAX_INT_DIGITS)
    for text in ("1" * (MAX_INT_DIGITS + 1), "-" + "1" * 400, "Infinity", "-Infinity", "NaN", "[1e400]",
                 "[" * 100_000 + "]" * 100_000):
        with pytest.raises(JsonFileError):
            parse_json(text, "f")


def test_an_oversized_json_file_is_refused_before_parsing(tmp_path):
    big = tmp_path / "big.json"
    with open(big, "w") as fh:
        fh.write("[" + "{}," * (MAX_LUT_BYTES // 3 + 10) + "{}]")
    t0 = time.perf_counter()
    with pytest.raises(JsonFileError, match="over the limit"):
        load_json(big, MAX_LUT_BYTES)
    assert time.perf_counter() - t0 < 1.0


# --- manifests -------------------------------------------------------------------------------

GOOD_LOG = ("Running benchmark for at least 5 iterations\ncount=5 avg=10\n"
            "Running benchmark for at least 50 iterations\ncount=50 avg=12.5\n")

BAD_MANIFESTS = {
    "runs-object": ('{"runs": {"k": 1}}', "runs: {'k': 1} is not of type 'array'"),
    "k-string": ('{"runs": [{"k": "1", "status": "ok"}]}', "runs[0].k: '1' is not of type 'integer'"),
    "expected-huge": ('{"runs": [], "expected_runs": 99999999999}', "expected_runs: 99999999999 is greater than"),
    "k-huge-int": ('{"runs": [{"k": ' + "9" * 400 + ', "status": "ok"}]}', "an integer of 400 digits"),
    "list": ("[1, 2]", "the top level: [1, 2] is not of type 'object'"),
    "status": ('{"runs": [{"k": 1, "status": "great"}]}', "runs[0].status: 'great' is not one of"),
}


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_a_manifest_of_the_wrong_shape_is_one_line_exit_2(tmp_path, case):
    text, expected = BAD_MANIFESTS[case]
    (tmp_path / "m_run1.txt").write_text(GOOD_LOG)
    (tmp_path / "m.bench.json").write_text(text)
    proc = run("logs", "summarize", tmp_path)
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc)
    assert line.startswith(f"error: {tmp_path / 'm.bench.json'}: ") and expected in line, line
    assert proc.stdout == ""


# --- LUTs ------------------------------------------------------------------------------------

def _lut() -> dict:
    from test_latency_lut import synthetic_lut

    return synthetic_lut(fingerprint={"target": "local"}).as_dict()


def _predict(lut_path):
    return run("latency", "predict", "--profile", "0.5flops", "--lut", lut_path, "--ignore-fingerprint", "--json")


def test_lut_integers_of_400_digits_are_refused(tmp_path):
    d = _lut()
    text = json.dumps(d).replace('"input_size": 224', '"input_size": ' + "2" * 400, 1)
    (tmp_path / "lut.json").write_text(text)
    proc = _predict(tmp_path / "lut.json")
    assert proc.returncode == 2, proc.stderr
    assert "an integer of 400 digits" in one_error_line(proc)


@pytest.mark.parametrize("how", ["sum", "extrapolation"])
def test_lut_values_whose_prediction_overflows_are_refused(tmp_path, how):
    d = _lut()
    for t in d["tables"].values():
        if how == "sum":  # every value finite, their sum is not
            t["us"] = [[1.7e308] * len(t["cout"]) for _ in t["cin"]]
        else:  # a tiny axis step: extrapolating past it overflows
            t["cin"] = [0.0, 1e-300] if len(t["cin"]) > 1 else t["cin"]
            t["us"] = [[0.0] * len(t["cout"]), [1e300] * len(t["cout"])][:len(t["cin"])]
    (tmp_path / "lut.json").write_text(json.dumps(d))
    proc = _predict(tmp_path / "lut.json")
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Infinity" not in proc.stdout and "NaN" not in proc.stdout
    line = one_error_line(proc)
    assert line.startswith("error: ") and "non-finite latency" in line


def test_lut_of_the_wrong_shape_names_the_field(tmp_path):
    d = _lut()
    d["tables"][sorted(d["tables"])[0]]["res"] = "224"
    (tmp_path / "lut.json").write_text(json.dumps(d))
    proc = _predict(tmp_path / "lut.json")
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert line.startswith(f"error: LUT: {tmp_path / 'lut.json'}: tables.") and ".res: '224' is not of type 'integer'" in line


def _manifest() -> dict:
    return {"name": "m", "model": "m.tflite", "model_sha256": "0" * 64, "target": "local",
            "protocol": {"warmup": 1, "runs": 2, "repeats": 2, "threads": 1}, "runner": {},
            "runs": [{"k": 1, "status": "ok", "log": "m_run1.txt", "inference_avg_us": 12.5, "count": 50,
                      "error": None, "returncode": 0, "duration_s": 1.0, "device_before": None, "device_after": None},
                     {"k": 2, "status": "failed", "error": "boom"}],
            "expected_runs": 2, "ok": False}


MANIFEST_PATHS = [p for p in _paths(_manifest()) if p]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(MANIFEST_PATHS), value=_JSON)
def test_any_manifest_field_replaced_by_any_value_is_summarised_or_refused_cleanly(tmp_path, where, value):
    from amc_tf.benchmarks.summary import summarize_dir, to_csv, to_markdown, to_text

    m = copy.deepcopy(_manifest())
    node = m
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    (tmp_path / "m_run1.txt").write_text(GOOD_LOG)
    (tmp_path / "m.bench.json").write_text(json.dumps(m))
    try:
        models = summarize_dir(tmp_path)
        to_text(models), to_markdown(models), to_csv(models)
    except AmcError:
        pass  # a clean refusal; anything else would be exit 70


_LUT_PATHS = None


def _lut_paths():
    global _LUT_PATHS
    if _LUT_PATHS is None:
        d = _lut()
        # the top level, one table and its first rows/values stand for all
        first = sorted(d["tables"])[0]
        d["tables"] = {first: d["tables"][first]}
        _LUT_PATHS = [p for p in _paths(d) if p and not (len(p) > 3 and p[2] == "us" and p[3] > 1)]
    return _LUT_PATHS


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), value=_JSON | st.floats(min_value=1e300, max_value=1.7e308))
def test_any_lut_field_replaced_by_any_value_predicts_finite_or_is_refused(tmp_path, data, value):
    import math

    from amc_tf.benchmarks.latency_lut import load_lut

    where = data.draw(st.sampled_from(_lut_paths()))
    d = _lut()
    node = d
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    (tmp_path / "lut.json").write_text(json.dumps(d))
    try:
        ms = load_lut(tmp_path / "lut.json").predict(profile_spec("0.5flops"))
    except AmcError:
        return  # a clean refusal
    assert math.isfinite(ms) and ms >= 0
