"""`amc-tf device emulate`: an emulated Android device on 127.0.0.1 that the real adb
client and server connect to (`adb connect 127.0.0.1:PORT`), so the adb target can be
dry-run without a phone. Commands run on this host: it measures the host, not a phone."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

import click

from amc_tf.cli.output import echo
from amc_tf.core.errors import AmcError


# Outside 5554-5585: the adb server probes those ports for local emulators by itself, so a
# device there is listed twice (127.0.0.1:5555 and emulator-5554) and `bench --target adb`
# without --serial would find "several devices".
DEFAULT_PORT = 15555
ADB_EMULATOR_SCAN = range(5554, 5586)


class _Terminated(Exception):
    pass


@click.group("device")
def device():
    """Android device helpers for the adb target."""


@device.command("emulate")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="TCP port on 127.0.0.1 (0: pick a free one and print it); keep it outside 5554-5585, which "
                   "the adb server scans for local emulators (it would list the device twice)")
@click.option("--root", "root", required=True, type=click.Path(file_okay=False),
              help="directory playing the device's /data and /sdcard: new, empty or an earlier emulator root "
                   "(created if missing)")
@click.option("--state", type=click.Choice(["device", "unauthorized", "offline"]), default="device",
              show_default=True, help="unauthorized: ask for auth and never accept the key; offline: never answer")
@click.option("--adb-keys", type=click.Path(dir_okay=False), default=None,
              help="require adb's RSA authentication and accept the keys in this file (adbkey.pub lines, "
                   "like a phone's adb_keys)")
@click.option("--legacy-shell", is_flag=True, help="do not offer shell protocol v2 (old devices: no exit status)")
@click.option("--prop", "props", multiple=True, metavar="KEY=VALUE", help="set a getprop property (repeatable)")
@click.option("--max-seconds", type=click.IntRange(0), default=0, show_default=True,
              help="stop by itself after this long (0: run until interrupted), so a script never leaves it behind")
@click.option("--handshake-timeout", type=click.FloatRange(0.1, 3600), default=60.0, show_default=True,
              help="close a connection that is not online (CNXN, and AUTH when asked) after this many seconds")
@click.option("--json", "as_json", is_flag=True,
              help='once listening, print {"serial", "port", "root", "state", ...} as JSON on stdout')
@click.option("-q", "--quiet", is_flag=True, help="print only the listening line")
def emulate(port, root, state, adb_keys, legacy_shell, props, max_seconds, handshake_timeout, as_json, quiet):
    """Serve an emulated Android device on 127.0.0.1:PORT until interrupted. adb shell runs
    the host's /bin/sh inside ROOT (device paths /data/... and /sdcard/... map to ROOT/...);
    push/pull land in ROOT; getprop answers from the properties. Loopback only."""
    from amc_tf.benchmarks.adbemu.auth import load_keys
    from amc_tf.benchmarks.adbemu.device import EmulatedDevice
    from amc_tf.benchmarks.adbemu.sandbox import Sandbox, check_root, default_props, parse_props

    check_root(root)
    keys = None
    if adb_keys:
        if state != "device":
            raise AmcError(f"--adb-keys goes with --state device, not {state}")
        try:
            keys = load_keys(Path(adb_keys))
        except OSError as exc:
            raise AmcError(f"--adb-keys {adb_keys}: {exc.strerror}") from None
        except ValueError as exc:
            raise AmcError(f"--adb-keys: {exc}") from None
    all_props = default_props(secure=keys is not None or state == "unauthorized")
    all_props.update(parse_props(list(props)))
    sandbox = Sandbox(root, all_props)
    try:
        sandbox.prepare()
    except OSError as exc:
        raise AmcError(f"--root {root}: cannot prepare it: {exc.strerror}") from None

    def say(msg: str) -> None:
        if not quiet:
            echo(f"[{time.strftime('%H:%M:%S')}] {msg}", err=True)

    try:
        dev = EmulatedDevice(sandbox, port=port, state=state, shell_v2=not legacy_shell, say=say, adb_keys=keys,
                             handshake_timeout=handshake_timeout)
    except OSError as exc:
        raise AmcError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror} (give another --port, or --port 0 "
                       f"for a free one)") from None
    auth_desc = "" if keys is None else f", RSA auth with {len(keys)} key{'s' * (len(keys) != 1)}"
    echo(f"emulated Android device listening on 127.0.0.1:{dev.port} (state {state}{auth_desc}, "
               f"shell {'legacy' if legacy_shell else 'v2'}, root {sandbox.root}); "
               f"connect with: adb connect 127.0.0.1:{dev.port}", err=True)
    if as_json:
        from amc_tf.cli.output import emit_json

        emit_json({"serial": f"127.0.0.1:{dev.port}", "port": dev.port, "root": str(sandbox.root), "state": state,
                   "shell": "legacy" if legacy_shell else "v2", "auth_keys": None if keys is None else len(keys),
                   "max_seconds": max_seconds or None})
        sys.stdout.flush()
    say("commands run on this host: timings measure the host CPU, not a phone")
    if dev.port in ADB_EMULATOR_SCAN:
        say(f"note: port {dev.port} is in 5554-5585, which the adb server scans for local emulators: `adb devices` "
            f"will list this device twice; pass --serial to bench, or use another --port")

    def on_term(_sig, _frame):
        raise _Terminated()

    previous = signal.signal(signal.SIGTERM, on_term)
    timed_out = threading.Event()

    def time_up():
        timed_out.set()
        dev.stop()

    timer = threading.Timer(max_seconds, time_up) if max_seconds else None
    if timer:
        timer.daemon = True
        timer.start()
    try:
        dev.serve_forever()  # returns only after stop(): here, only --max-seconds calls it
        echo(f"stopped after {max_seconds}s (--max-seconds)" if timed_out.is_set() else "stopped", err=True)
    except _Terminated:
        echo("stopped (SIGTERM)", err=True)
        sys.exit(143)
    finally:
        if timer:
            timer.cancel()
        dev.stop()
        signal.signal(signal.SIGTERM, previous)


@device.command("benchmark-binary")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="replace OUT if it exists")
@click.option("--json", "as_json", is_flag=True, help='print {"path", "python"} as JSON on stdout')
def benchmark_binary(out, force, as_json):
    """Write OUT: a benchmark_model for the emulated device (a sh script running the model
    through this project's LiteRT runner on the host, printing benchmark_model's log).
    Push it with `amc-tf bench --target adb --benchmark-binary OUT`."""
    from amc_tf.benchmarks.adbemu.host_benchmark_model import wrapper_script
    from amc_tf.benchmarks.runlog import atomic_write

    path = Path(out)
    if path.exists() and not force:
        raise AmcError(f"{path} exists (use --force to replace it)")
    if not path.parent.is_dir():
        raise AmcError(f"directory {path.parent} does not exist")
    try:
        atomic_write(path, wrapper_script(sys.executable), overwrite=force)
    except FileExistsError:
        raise AmcError(f"{path} exists (use --force to replace it)") from None
    path.chmod(0o755)
    echo(f"wrote {path} (runs LiteRT on this host with {sys.executable})", err=True)
    if as_json:
        from amc_tf.cli.output import emit_json

        emit_json({"path": str(path), "python": sys.executable})


COMMANDS = [device]
