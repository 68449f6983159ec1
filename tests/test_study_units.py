"""The study's pieces that need no worker: model lists, the Pareto front, the progress bar."""

from __future__ import annotations

import pytest

from amc_tf.cli.output import ProgressBar
from amc_tf.services.study.discover import StudyInputError, discover
from amc_tf.services.study.plan import Latency, StudyOptions
from amc_tf.services.study.report import pareto_front


def test_a_toml_list_gives_names_and_profiles_relative_to_itself(tmp_path):
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "a.pth.tar").write_bytes(b"x")
    (tmp_path / "ck" / "b.onnx").write_bytes(b"x")
    (tmp_path / "list.toml").write_text('[[model]]\npath = "ck/a.pth.tar"\nname = "half"\nprofile = "0.5flops"\n'
                                        '[[model]]\npath = "ck/b.onnx"\n')
    got = discover([str(tmp_path / "list.toml")])
    assert [(m.name, m.profile) for m in got] == [("half", "0.5flops"), ("b", None)]
    assert got[0].path == str(tmp_path / "ck" / "a.pth.tar")
    folder = discover([str(tmp_path / "ck")])
    assert [m.name for m in folder] == ["a", "b"]
    (tmp_path / "bad.toml").write_text('[[model]]\npath = "ck/a.pth.tar"\nprofile = "0.9"\n')
    with pytest.raises(StudyInputError, match="unknown profile '0.9'"):
        discover([str(tmp_path / "bad.toml")])


def test_options_parse_precisions_and_latency(tmp_path):
    assert StudyOptions.parse_precisions("int8, fp32,int8") == ("int8", "fp32")
    assert Latency.parse("adb:A,B").serials == ("A", "B")
    with pytest.raises(StudyInputError):
        Latency.parse("adb:A,A")
    with pytest.raises(StudyInputError, match="no such file"):
        Latency.parse(f"lut:{tmp_path}/x.json")


def test_the_pareto_front_keeps_the_points_nothing_beats():
    pts = [(10, 70), (5, 60), (12, 65), (5, 55), (20, 71), (10, 70)]
    assert pareto_front(pts) == [1, 0, 5, 4]


def test_the_progress_bar_gives_an_eta_from_computed_tasks_only():
    bar = ProgressBar(enabled=False, width=10)
    t0 = bar._t0
    assert bar.text(5, 10, 3, t0 + 20) == "[#####.....] 5/10 tasks, 3 cached  0:20 elapsed  ETA 0:50"
    assert bar.text(0, 4, 0, t0 + 1).endswith("ETA --:--")
    assert bar.text(4, 4, 0, t0 + 3600).endswith("1:00:00 elapsed  done")
