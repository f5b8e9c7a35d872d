"""The progress bar redraws by time, whatever the steps per second, and always shows a bar's end."""

import pytest

from lightning_app import progress
from lightning_app.progress import TimedProgressBar


class Bar:
    """The part of a tqdm bar that TimedProgressBar uses; records what was drawn."""

    def __init__(self, total: int | None) -> None:
        self.total, self.disable, self.n, self.postfix, self.drawn = total, False, 0, None, []

    def set_postfix(self, postfix, refresh: bool = True) -> None:
        assert not refresh  # one redraw per update, not two
        self.postfix = postfix

    def refresh(self) -> None:
        self.drawn.append((self.n, self.postfix))


@pytest.fixture
def clock(monkeypatch):
    """A clock that advances 0.125 s (exact in binary) every time it is read."""
    now = [0.0]

    def monotonic() -> float:
        now[0] += 0.125
        return now[0]

    monkeypatch.setattr(progress.time, "monotonic", monotonic)


def test_redraws_every_interval_and_at_the_end(clock):
    bar, asked = Bar(total=20), []
    timed = TimedProgressBar(interval=0.5)
    for n in range(1, 21):
        timed._draw(bar, n, lambda: asked.append(n) or {"loss": n})
    assert [n for n, _ in bar.drawn] == [1, 5, 9, 13, 17, 20]  # 0.5 s apart, and the last step
    assert asked == [1, 5, 9, 13, 17, 20]  # the metrics are gathered only for a redraw
    assert bar.drawn[-1] == (20, {"loss": 20})


def test_a_bar_of_unknown_length_redraws_by_time_only(clock):
    bar = Bar(total=None)
    timed = TimedProgressBar(interval=1.0)
    for n in range(1, 31):
        timed._draw(bar, n)
    assert [n for n, _ in bar.drawn] == [1, 9, 17, 25]


def test_a_disabled_bar_is_never_drawn(clock):
    bar = Bar(total=3)
    bar.disable = True
    TimedProgressBar()._draw(bar, 3)
    assert bar.drawn == []


def test_a_negative_interval_is_refused():
    with pytest.raises(ValueError, match="interval must be 0 or more seconds, got -1"):
        TimedProgressBar(interval=-1)
