import re
import sys

import pytest

from bench import draw_speed


@pytest.mark.slow  # a fresh process per checkout and round
def test_the_drawing_benchmark_times_every_kind_in_each_checkout(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["draw_speed.py", "--rounds", "1"])
    draw_speed.main()
    rows = re.findall(r"^\| ([a-z][^|]+) \| ([\d.]+) s \|$", capsys.readouterr().out, re.MULTILINE)
    assert [kind for kind, _ in rows] == [
        "attention maps, 4 heads x 32 characters",
        "attention over an image, 4 heads",
        "confusion matrix, 10 classes, 15 mistakes",
        "per-class accuracy, 10 classes",
    ]
    assert all(0 < float(seconds) < 60 for _, seconds in rows)
