"""`amc-tf study --latency adb:S1,S2` through the real adb client and server against two
`amc-tf device emulate` devices (their benchmark_model runs LiteRT on the host): each record
timed with the Pixel-1 protocol on the phone it was dealt, logs kept."""

from __future__ import annotations

import subprocess

from adb_helpers import adb_env, adb_server, emulators  # noqa: F401  (fixtures)
from adb_helpers import AMC_TF
from study_helpers import env, make_inputs, records, study


def test_phone_latency_is_measured_on_the_phones_listed_in_turn(adb_server, emulators, tmp_path):
    models, _ = make_inputs(tmp_path / "in")
    a, b = emulators("a"), emulators("b")
    bm = tmp_path / "benchmark_model"
    assert subprocess.run([*AMC_TF, "device", "benchmark-binary", str(bm)], capture_output=True).returncode == 0
    out = tmp_path / "s"
    proc = study(models / "tiny.pth.tar", "--precision", "fp32,fp16", "--latency", f"adb:{a.serial},{b.serial}",
                 "--benchmark-binary", bm, "--input-size", "64", "--workers", "2", "-q", "-o", out, env=env())
    assert proc.returncode == 0, proc.stderr
    recs = records(out)
    for (precision, phone) in (("fp32", a), ("fp16", b)):
        r = recs[("tiny", precision)]
        assert r["latency_source"] == f"adb:{a.serial},{b.serial}"
        assert r["latency_ms"] > 0 and f"on the phone {phone.serial} with the Pixel-1 protocol" in \
            r["sources"]["latency_ms"]
        logs = sorted(p.name for p in (out / r["artifacts"] / "latency").glob("*_run*.txt"))
        assert logs == [f"tiny-{precision}_run{k}.txt" for k in (1, 2, 3)]
        assert (phone.tmp / f"tiny-{precision}.tflite").is_file()  # pushed to that phone, under its log name
