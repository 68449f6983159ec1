"""A real two-node Ray cluster on loopback, inside a private network namespace, for the study's
Ray tests. Ray takes the host's outward address even when told 127.0.0.1, so the nodes and the
study that uses them run under `nsenter` into a namespace holding only `lo` (we run as root);
they authenticate with a token (RAY_AUTH_MODE=token) and contact no other address. Every
process started is stopped by PID: the `ray start --block` processes, their descendants, and
any process whose command line names the cluster's own temp folder."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")
PORT = 6390  # the namespace is private: no other process can hold it


def descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = {int(c) for c in (task / "children").read_text().split()}
            except OSError:
                continue
            todo += list(kids - found)
            found |= kids
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _kill(pids) -> None:
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Cluster:
    def __init__(self):
        self.token = secrets.token_hex(16)
        self.tmp = tempfile.mkdtemp(prefix="amcray", dir="/tmp")  # short: Ray's socket paths have a length limit
        self.holder = subprocess.Popen(["unshare", "-n", "sh", "-c", "ip link set lo up && exec sleep 86400"])
        self.nodes: dict[str, subprocess.Popen] = {}
        self.address = f"127.0.0.1:{PORT}"
        self.env = dict(os.environ, PYTHONPATH=str(ROOT), RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=self.token,
                        RAY_USAGE_STATS_ENABLED="0", TF_CPP_MIN_LOG_LEVEL="3", RAY_health_check_period_ms="1000",
                        RAY_health_check_failure_threshold="3", RAY_health_check_initial_delay_ms="1000")
        self.env.pop("RAY_ADDRESS", None)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if os.readlink(f"/proc/{self.holder.pid}/ns/net") != os.readlink("/proc/self/ns/net") and \
                    "UP" in self.run(["ip", "-o", "link", "show", "lo"]).stdout:
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("the private network namespace did not come up")

    def prefix(self) -> list[str]:
        return ["nsenter", f"--net=/proc/{self.holder.pid}/ns/net"]

    def run(self, args, **kw) -> subprocess.CompletedProcess:
        return subprocess.run([*self.prefix(), *map(str, args)], capture_output=True, text=True,
                              env=kw.pop("env", self.env), **kw)

    def popen(self, args, **kw) -> subprocess.Popen:
        return subprocess.Popen([*self.prefix(), *map(str, args)], env=kw.pop("env", self.env), **kw)

    def start_node(self, name: str, head: bool = False, resources: str | None = None) -> None:
        args = [RAY, "start", "--block", "--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--disable-usage-stats",
                "--object-store-memory", str(200 * 2 ** 20)]
        if head:
            args += ["--head", "--port", str(PORT), "--include-dashboard=false", "--temp-dir", self.tmp]
        else:
            args += ["--address", self.address]
        if resources:
            args += ["--resources", resources]
        log = open(Path(self.tmp) / f"{name}.log", "w")
        self.nodes[name] = self.popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_nodes(self, n: int, timeout: float = 180) -> dict[str, str]:
        """{node id: its custom resource names} once n nodes are alive."""
        code = ("import ray, time, json\nray.init(address=%r, logging_level='ERROR', log_to_driver=False)\n"
                "deadline = time.time() + %f\n"
                "while True:\n"
                "    alive = [x for x in ray.nodes() if x['Alive']]\n"
                "    if len(alive) == %d or time.time() > deadline: break\n"
                "    time.sleep(0.5)\n"
                "print(json.dumps({x['NodeID']: sorted(x['Resources']) for x in alive}))\n") % (self.address, timeout, n)
        out = self.run([sys.executable, "-c", code], timeout=timeout + 60)
        import json

        nodes = json.loads(out.stdout.strip().splitlines()[-1])
        if len(nodes) != n:
            raise RuntimeError(f"{len(nodes)} Ray node(s) alive, wanted {n}: {out.stderr[-2000:]}")
        return nodes

    def kill_node(self, name: str) -> None:
        proc = self.nodes.pop(name)
        _kill(descendants(proc.pid) | {proc.pid})
        proc.wait(30)

    def ours(self) -> set[int]:
        pids = set()
        for proc in [*self.nodes.values(), self.holder]:
            pids |= descendants(proc.pid) | {proc.pid}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and self.tmp in _cmdline(int(entry.name)):
                pids.add(int(entry.name))
        return {p for p in pids - {os.getpid()} if Path(f"/proc/{p}").exists()}

    def stop(self) -> None:
        for name in list(self.nodes):
            self.kill_node(name)
        _kill(self.ours())
        self.holder.wait(30)
        shutil.rmtree(self.tmp, ignore_errors=True)
