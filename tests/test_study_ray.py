"""`amc-tf study --ray-address` on a real two-node Ray cluster on loopback (tests/ray_cluster.py:
a private network namespace, token authentication, every process stopped by PID). The figures
equal a local study's, both nodes do work, and a node killed mid-study changes no figure."""

from __future__ import annotations

import json
import sys
import time

import pytest

from ray_cluster import Cluster
from study_helpers import FIGURES, make_inputs, records, study

ARGS = ("--input-size", "64", "--chunk-size", "10", "-q")


def _figures(studydir):
    return {k: {f: r[f] for f in FIGURES} for k, r in records(studydir).items()}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(cluster, {node id: resources}, models, images, the local study's figures); one cluster for the module."""
    root = tmp_path_factory.mktemp("study-ray")
    models, images = make_inputs(root)
    (models / "notes.pth").unlink()
    cluster = Cluster()
    try:
        cluster.start_node("head", head=True)
        cluster.start_node("second", resources='{"second": 1}')
        local = study(models, "--images", images, "--workers", "2", "-o", root / "local", *ARGS)  # while Ray starts
        assert local.returncode == 0, local.stderr
        nodes = cluster.wait_nodes(2)
        yield cluster, nodes, models, images, _figures(root / "local"), root
    finally:
        cluster.stop()
        assert not cluster.ours()


def _ray_study(cluster, *args, **kw):
    return cluster.run([sys.executable, "-m", "amc_tf", "study", *args, "--ray-address", cluster.address, *ARGS],
                       timeout=900, **kw)


def test_a_two_node_study_gives_the_local_figures_and_uses_both_nodes(setup):
    cluster, nodes, models, images, local, root = setup
    proc = _ray_study(cluster, models, "--images", images, "-o", root / "ray")
    assert proc.returncode == 0, proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.strip()] == []  # -q: not a line, not a Ray warning
    assert _figures(root / "ray") == local
    used = {n.rsplit("/", 1)[-1] for r in records(root / "ray").values() for ns in r["nodes"].values() for n in ns}
    assert used == {node[:12] for node in nodes}, (used, nodes)
    assert json.loads((root / "ray" / "study.json").read_text())["study"]["backend"] == "ray"


def test_a_phone_no_node_advertises_is_refused(setup, tmp_path):
    cluster, _, models, images, _, _ = setup
    binary = tmp_path / "benchmark_model"
    binary.write_text("#!/bin/sh\n")
    proc = _ray_study(cluster, models / "tiny.pth.tar", "--latency", "adb:PHONE1", "--benchmark-binary", binary,
                      "-o", tmp_path / "s")
    assert proc.returncode == 2
    (line,) = [x for x in proc.stderr.splitlines() if x.strip()]
    assert line.startswith("error: no node of the Ray cluster at 127.0.0.1:6390 advertises adb:PHONE1")


def test_a_node_killed_mid_study_changes_no_figure(setup):
    cluster, nodes, models, images, local, root = setup
    (second,) = [n[:12] for n, res in nodes.items() if "second" in res]
    out = root / "killed"
    proc = cluster.popen([sys.executable, "-m", "amc_tf", "study", models, "--images", images, "--ray-address",
                          cluster.address, "-o", out, *ARGS, "--chunk-size", "4"],
                         stdout=open(root / "killed.out", "w"), stderr=open(root / "killed.err", "w"))
    cache = out / ".study" / "cache"
    deadline = time.monotonic() + 600
    on_second = []
    while not on_second and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
        for f in cache.glob("*.json"):
            try:
                if json.loads(f.read_text()).get("node", "").endswith(second):
                    on_second.append(f)
            except ValueError:
                pass
    assert on_second and proc.poll() is None, "the second node finished no task before the study ended"
    cluster.kill_node("second")
    assert proc.wait(600) == 0, (root / "killed.err").read_text()
    assert _figures(out) == local
    data = json.loads((out / "study.json").read_text())
    assert data["study"]["cached_tasks"] == 0
    assert any(n.endswith(second) for r in data["records"] for ns in r["nodes"].values() for n in ns)
