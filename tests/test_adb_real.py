"""The adb target end to end through the REAL adb client and server (Debian's `adb`)
against `amc-tf device emulate`. Every test runs its own adb server on a free port
(ANDROID_ADB_SERVER_PORT; never 5037) and kills it afterwards; every emulated device
listens on its own free loopback port."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import statistics
import subprocess
import threading
import time

import pytest
from click.testing import CliRunner

from adb_helpers import adb_env, adb_server, emulators  # noqa: F401  (fixtures)
from adb_helpers import ADB, AMC_TF, FAKE_TFLITE, NO_ADB, LOG_LINES, adb, script, tiny_tflite, wait_for
from amc_tf.cli import main
from amc_tf.benchmarks.logparse import parse_file


def bench(model, logdir, serials, binary, *extra):
    args = ["bench", str(model), "--target", "adb", "--benchmark-binary", str(binary), "--logdir", str(logdir)]
    for s in serials:
        args += ["--serial", s]
    return CliRunner().invoke(main, args + [str(e) for e in extra])


@pytest.fixture(scope="module")
def real_model(tmp_path_factory):
    if ADB is None:
        pytest.skip(NO_ADB)
    return tiny_tflite(tmp_path_factory.mktemp("model") / "tiny.tflite")


@pytest.fixture
def fake_model(tmp_path):
    p = tmp_path / "models" / "mnet.tflite"
    p.parent.mkdir()
    p.write_bytes(FAKE_TFLITE)
    return p


@pytest.mark.parametrize("shell", ["v2", "legacy"])
def test_three_runs_of_real_litert_land_as_logs_and_summary(adb_server, emulators, real_model, tmp_path, shell):
    emu = emulators("dev", *(["--legacy-shell"] if shell == "legacy" else []))
    bm = tmp_path / "bin" / "benchmark_model"
    bm.parent.mkdir()
    assert subprocess.run([*AMC_TF, "device", "benchmark-binary", str(bm)], capture_output=True).returncode == 0
    logdir = tmp_path / "logs"
    res = bench(real_model, logdir, [emu.serial], bm, "--warmup", 5, "--runs", 20, "--json")
    assert res.exit_code == 0, res.output
    # binary and model were pushed through adb's sync service, byte for byte
    for local in (bm, real_model):
        remote = emu.tmp / local.name
        assert hashlib.sha256(remote.read_bytes()).digest() == hashlib.sha256(local.read_bytes()).digest()
    assert os.access(emu.tmp / bm.name, os.X_OK)
    avgs = []
    for k in (1, 2, 3):
        log = logdir / f"tiny_run{k}.txt"
        r = parse_file(log)
        assert r.ok and (r.count, r.warmup_count) == (20, 5), log.read_text()
        assert 0 < r.inference_avg_us < 1e6
        text = log.read_bytes()
        assert f"Graph: [{emu.tmp / 'tiny.tflite'}]".encode() in text  # it ran inside the device's root
        assert (b"\r\n" in text) == (shell == "legacy")  # the raw output: old devices' pty ends lines with \r\n
        avgs.append(r.inference_avg_us)
    out = json.loads(res.stdout)
    (m,) = out["models"]
    assert m["complete"] and m["mean_ms"] == pytest.approx(statistics.mean(avgs) / 1000, rel=1e-3)
    info = out["runs"][0]["runs"][0]["device_before"]
    assert info["model"] == "amc-tf emulated device (host CPU)" and (info["android"], info["sdk"]) == ("10", "29")
    assert out["runs"][0]["runner"]["serial"] == emu.serial


@pytest.mark.parametrize("shell", ["v2", "legacy"])
def test_binary_exiting_nonzero_is_a_failed_run(adb_server, emulators, fake_model, tmp_path, shell):
    emu = emulators("dev", *(["--legacy-shell"] if shell == "legacy" else []))
    # a complete-looking log, then exit 1 at the 2nd invocation: only the exit status tells
    bm = script(tmp_path / "bin" / "bm", 'n=$(cat "$0.n" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$0.n"\n'
                f"cat <<'EOF'\n{LOG_LINES}EOF\n" + '[ $n -eq 2 ] && exit 1\nexit 0\n')
    res = bench(fake_model, tmp_path / "logs", [emu.serial], bm, "--json")
    assert res.exit_code == 3, res.output
    runs = json.loads(res.stdout)["runs"][0]["runs"]
    assert [r["status"] for r in runs] == ["ok", "failed", "ok"]
    assert runs[1]["returncode"] == 1 and runs[1]["error"] == "benchmark_model exited with code 1"
    assert res.stderr.strip().splitlines()[-1].startswith("error: not every run succeeded")


def test_device_vanishing_during_run_2_keeps_run_1(adb_server, emulators, fake_model, tmp_path):
    emu = emulators("dev")
    marker = emu.tmp / "run2.started"
    bm = script(tmp_path / "bin" / "bm", 'n=$(cat "$0.n" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$0.n"\n'
                'echo STARTING!\n[ $n -eq 2 ] && { touch "$(dirname "$0")/run2.started"; sleep 60; }\n'
                f"cat <<'EOF'\n{LOG_LINES}EOF\n")
    pulled = threading.Thread(target=lambda: wait_for(marker) and emu.stop())  # the cable is pulled in run 2
    pulled.start()
    res = bench(fake_model, tmp_path / "logs", [emu.serial], bm, "--json")
    pulled.join()
    assert res.exit_code == 3, res.output
    runs = json.loads(res.stdout)["runs"][0]["runs"]
    assert [r["status"] for r in runs] == ["ok", "lost", "missing"]
    assert runs[1]["error"].startswith(f"device {emu.serial} lost during run 2")
    assert parse_file(tmp_path / "logs" / "mnet_run1.txt").inference_avg_us == 100.5
    assert (tmp_path / "logs" / "mnet_run2.partial.txt").read_text().startswith("STARTING!")
    assert not (tmp_path / "logs" / "mnet_run3.txt").exists()
    assert adb("-s", emu.serial, "get-state", check=False).returncode != 0


@pytest.mark.parametrize("state,message", [
    ("unauthorized", "error: device {s} is unauthorized: unlock it and accept the 'Allow USB debugging' prompt "
                     "(or revoke USB debugging authorisations and reconnect)"),
    ("offline", "error: device {s} is offline: reconnect it (or run `adb reconnect`)"),
    ("not-connected", "error: device {s} not found (connected: none); for a network device run `adb connect {s}` "
                      "first"),
])
def test_unauthorized_offline_and_unconnected_give_one_line_errors(adb_server, emulators, fake_model, tmp_path,
                                                                    state, message):
    if state == "not-connected":
        emu = emulators("dev", connect=False)
    else:
        emu = emulators("dev", "--state", state)
        assert adb("devices").stdout.splitlines()[1].split() == [emu.serial, state]
    res = bench(fake_model, tmp_path / "logs", [emu.serial], tmp_path / "models" / "mnet.tflite")
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines() == [message.format(s=emu.serial)]
    assert not (tmp_path / "logs").exists() or not list((tmp_path / "logs").iterdir())


def test_names_with_spaces_and_shell_metacharacters_survive(adb_server, emulators, tmp_path):
    emu = emulators("dev")
    odd = "a b;$(touch pwned)`id` 'q\"&|*ü"
    model = tmp_path / "models" / f"{odd}.tflite"
    model.parent.mkdir()
    model.write_bytes(FAKE_TFLITE)
    bm = script(tmp_path / "bin" / f"bm {odd}",
                'for a in "$@"; do printf "%s\\n" "$a"; done > "$(dirname "$0")/argv.txt"\n'
                f"cat <<'EOF'\n{LOG_LINES}EOF\n")
    res = bench(model, tmp_path / "logs", [emu.serial], bm, "--name", "odd", "--repeats", 1, "--cleanup")
    assert res.exit_code == 0, res.output
    argv = (emu.tmp / "argv.txt").read_text().splitlines()
    assert argv[0] == f"--graph={emu.tmp}/odd.tflite"  # one argument: the model goes to the device as <log name>.tflite
    assert not list(emu.root.rglob("pwned")) and not list(tmp_path.rglob("pwned"))
    assert not (emu.tmp / "odd.tflite").exists() and not (emu.tmp / bm.name).exists()  # --cleanup removed them
    # and plain adb moves such a name both ways
    adb("-s", emu.serial, "push", str(model), f"/data/local/tmp/{odd}.x")
    assert (emu.tmp / f"{odd}.x").read_bytes() == FAKE_TFLITE
    adb("-s", emu.serial, "pull", f"/data/local/tmp/{odd}.x", str(tmp_path / "back"))
    assert (tmp_path / "back").read_bytes() == FAKE_TFLITE


def test_two_emulated_devices_run_in_parallel(adb_server, emulators, fake_model, tmp_path):
    a, b = emulators("a"), emulators("b")
    bm = script(tmp_path / "bin" / "bm", 'date +%s.%N >> "$0.times"; sleep 1; date +%s.%N >> "$0.times"\n'
                f"cat <<'EOF'\n{LOG_LINES}EOF\n")
    res = bench(fake_model, tmp_path / "logs", [a.serial, b.serial], bm, "--json")
    assert res.exit_code == 0, res.output
    names = sorted(m["name"] for m in json.loads(res.stdout)["models"])
    assert names == sorted(f"mnet@127.0.0.1_{e.port}" for e in (a, b))
    spans = []
    for emu in (a, b):
        t = [float(x) for x in (emu.tmp / "bm.times").read_text().split()]
        assert len(t) == 6
        spans.append((t[0], t[-1]))
    (a0, a1), (b0, b1) = spans
    assert max(a0, b0) < min(a1, b1)  # the two devices' runs overlapped in time


def test_callers_stdin_is_not_forwarded_to_the_device(adb_server, emulators, fake_model, tmp_path):
    emu = emulators("dev")
    bm = script(tmp_path / "bin" / "bm", 'cat > "$0.stdin"\n' f"cat <<'EOF'\n{LOG_LINES}EOF\n")
    cmd = " ".join(f"'{a}'" for a in [*AMC_TF, "bench", str(fake_model), "--target", "adb", "--serial", emu.serial,
                                      "--benchmark-binary", str(bm), "--repeats", "1", "--logdir",
                                      str(tmp_path / "logs")])
    proc = subprocess.run(["sh", "-c", f"{cmd} >/dev/null 2>&1; echo rc=$?; cat"], input="serial-2\nserial-3\n",
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout == "rc=0\nserial-2\nserial-3\n"  # what a `while read` loop would still read
    assert (emu.tmp / "bm.stdin").read_text() == ""


@pytest.mark.parametrize("obstacle", ["directory-at-model-path", "tmp-is-a-file"])
def test_push_obstacles_give_one_line_errors(adb_server, emulators, fake_model, tmp_path, obstacle):
    emu = emulators("dev")
    bm = script(tmp_path / "bin" / "bm", f"cat <<'EOF'\n{LOG_LINES}EOF\n")
    if obstacle == "directory-at-model-path":
        # real `adb push` would put the model *inside* it and the run would read a directory
        (emu.tmp / "mnet.tflite").mkdir(parents=True)
        expected = (f"error: {emu.serial}: /data/local/tmp/mnet.tflite is a directory on the device; remove it "
                    f"(adb -s {emu.serial} shell rm -r /data/local/tmp/mnet.tflite)")
    else:
        emu.tmp.rmdir()
        emu.tmp.write_text("not a directory")
        expected = (f"error: {emu.serial}: push of {bm} to /data/local/tmp/bm failed: adb: error: failed to copy "
                    f"'{bm}' to '/data/local/tmp/bm': remote couldn't create file: ")
    res = bench(fake_model, tmp_path / "logs", [emu.serial], bm)
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines()[-1].startswith(expected)  # one line, adb's reason at the end


@pytest.mark.parametrize("key", ["servers-key", "another-key"])
def test_rsa_authentication_with_the_real_servers_key(adb_server, emulators, fake_model, tmp_path, key):
    server_key = tmp_path / "home" / ".android" / "adbkey.pub"  # written by the adb server at start-up
    assert server_key.is_file()
    keys = tmp_path / "adb_keys"
    if key == "servers-key":
        keys.write_text(server_key.read_text())
    else:  # a well-formed key whose modulus the server cannot sign for
        raw = bytearray(base64.b64decode(server_key.read_text().split()[0]))
        raw[8:12] = bytes(b ^ 0x55 for b in raw[8:12])
        keys.write_text(base64.b64encode(bytes(raw)).decode() + " someone@elsewhere\n")
    emu = emulators("dev", "--adb-keys", str(keys))
    state = "device" if key == "servers-key" else "unauthorized"
    assert adb("devices").stdout.splitlines()[1].split() == [emu.serial, state]
    if state == "device":
        assert adb("-s", emu.serial, "shell", "getprop ro.adb.secure").stdout == "1\n"
    else:
        res = bench(fake_model, tmp_path / "logs", [emu.serial], fake_model)
        assert res.exit_code == 2 and f"device {emu.serial} is unauthorized" in res.stderr


def test_killing_the_adb_client_ends_the_device_process(adb_server, emulators, tmp_path):
    """What a run timeout does (the adb client is killed): the server closes the stream and
    the emulated device ends the session's processes, as adbd does."""
    emu = emulators("dev")
    client = subprocess.Popen(["adb", "-s", emu.serial, "shell", "echo $$ > /data/local/tmp/pid; exec sleep 60"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pidfile = emu.tmp / "pid"
    assert wait_for(pidfile) and wait_for_text(pidfile)
    pid = int(pidfile.read_text())
    client.kill()
    client.wait()
    for _ in range(200):
        if not os.path.exists(f"/proc/{pid}") or "Z" in open(f"/proc/{pid}/stat").read().split()[2]:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the device process outlived its adb client")


def wait_for_text(path, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.read_text().strip():
            return True
        time.sleep(0.05)
    return False


def test_server_start_up_chatter_stays_out_of_the_error(adb_env, fake_model, tmp_path):
    # no server yet: amc-tf's first adb call starts it (adb prints `* daemon not running; starting now at tcp:PORT`
    # and `* daemon started successfully` on stderr) and the server leaves its log in HOME/.android
    server_log = tmp_path / "home" / ".android" / f"adb.{adb_env}"
    assert not server_log.exists()
    res = bench(fake_model, tmp_path / "logs", ["127.0.0.1:9"], fake_model)
    assert res.exit_code == 2 and server_log.exists()
    assert res.stderr.splitlines() == ["error: device 127.0.0.1:9 not found (connected: none); for a network device "
                                       "run `adb connect 127.0.0.1:9` first"]


def test_two_outdirs_each_holding_model_tflite_run_as_themselves(adb_server, emulators, tmp_path, monkeypatch):
    # the local command `amc-tf bench out out-fp16` works unchanged with --target adb
    emu = emulators("dev")
    monkeypatch.chdir(tmp_path)
    digests = {}
    for folder, extra in (("out", b"fp32"), ("out-fp16", b"fp16")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "model.tflite").write_bytes(FAKE_TFLITE + extra)
        digests[folder] = hashlib.sha256(FAKE_TFLITE + extra).hexdigest()
    bm = script(tmp_path / "bin" / "bm", 'g="${1#--graph=}"; echo "$(basename "$g") $(sha256sum < "$g")" >> "$0.seen"\n'
                f"cat <<'EOF'\n{LOG_LINES}EOF\n")
    proc = subprocess.run([*AMC_TF, "bench", "out", "out-fp16", "--target", "adb", "--benchmark-binary", str(bm),
                           "--repeats", "2", "--logdir", "logs"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    seen = [line.split()[:2] for line in (emu.tmp / "bm.seen").read_text().splitlines()]
    assert seen == [["out.tflite", digests["out"]]] * 2 + [["out-fp16.tflite", digests["out-fp16"]]] * 2
    assert sorted(p.name for p in (tmp_path / "logs").glob("*_run*.txt")) == [
        "out-fp16_run1.txt", "out-fp16_run2.txt", "out_run1.txt", "out_run2.txt"]
    assert [line.split()[0] for line in proc.stdout.splitlines()[1:]] == ["out", "out-fp16"]


def _listed() -> dict[str, str]:
    lines = adb("devices").stdout.splitlines()[1:]
    return dict(line.split()[:2] for line in lines if line.strip())


def _free_port_in_adbs_emulator_scan() -> int:
    import socket

    for port in range(5555, 5586, 2):  # the adb ports the server probes (emulator-5554 is 5555, ...)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("every port 5555-5585 is taken on this machine")


def test_emulate_defaults_to_a_port_adb_does_not_scan_so_the_device_is_listed_once(adb_env, emulators, tmp_path):
    from amc_tf.cli.device_cmd import emulate

    (port,) = [p.default for p in emulate.params if p.name == "port"]
    assert port == 15555 and not 5554 <= port <= 5585
    proc = subprocess.run([*AMC_TF, "device", "emulate", "--help"], capture_output=True, text=True)
    assert "[default: 15555; 0<=x<=65535]" in " ".join(proc.stdout.split())
    # the device first, then the server: a starting adb server probes 5555-5585 for emulators
    emu = emulators("dev", connect=False)  # a free port outside that range, as the default is
    adb("start-server")
    emu.connect()
    time.sleep(1)
    assert _listed() == {emu.serial: "device"}
    bm = script(tmp_path / "bin" / "bm", f"cat <<'EOF'\n{LOG_LINES}EOF\n")
    res = bench(_fake(tmp_path), tmp_path / "logs", [], bm, "--repeats", 1)  # no --serial
    assert res.exit_code == 0, res.output
    assert parse_file(tmp_path / "logs" / "mnet_run1.txt").ok


def test_a_port_inside_adbs_emulator_scan_is_listed_twice_and_bench_says_why(adb_env, emulators, tmp_path):
    port = _free_port_in_adbs_emulator_scan()
    emu = emulators("dev", "--port", str(port), connect=False)
    adb("start-server")
    emu.connect()
    deadline = time.monotonic() + 20
    while f"emulator-{port - 1}" not in _listed() and time.monotonic() < deadline:
        time.sleep(0.2)
    listed = _listed()
    assert listed.get(emu.serial) == "device" and listed.get(f"emulator-{port - 1}") == "device"  # one device, twice
    bm = script(tmp_path / "bin" / "bm", f"cat <<'EOF'\n{LOG_LINES}EOF\n")
    res = bench(_fake(tmp_path), tmp_path / "logs", [], bm, "--repeats", 1)
    assert res.exit_code == 2
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("error: several devices connected (") and line.endswith(
        f"choose with --serial ({emu.serial} and emulator-{port - 1} are probably one device, seen twice because "
        "the adb server scans ports 5554-5585 for emulators; `amc-tf device emulate` listens on 15555 by default)")
    assert not (tmp_path / "logs").exists()


def _fake(tmp_path):
    p = tmp_path / "models" / "mnet.tflite"
    p.parent.mkdir(exist_ok=True)
    p.write_bytes(FAKE_TFLITE)
    return p
