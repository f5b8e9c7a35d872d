"""The trials' fork server's preload (lightning_app/sweep/warm.py), in a fresh Python."""

import pytest

from tests.lightning_app.test_main import spy


@pytest.mark.slow
def test_the_fork_server_loads_with_the_collector_off_then_freezes_what_it_loaded(monkeypatch):
    monkeypatch.delenv("LIGHTNING_APP_SWEEP_WARM", raising=False)
    seen = spy("lightning_app.sweep.warm", ["torch", "lightning", "wandb"], [])
    assert seen["seen"] == {"torch": False, "lightning": False, "wandb": False}
    assert seen["on"] and seen["frozen"] > 100_000  # every trial, a fork, starts with them frozen
