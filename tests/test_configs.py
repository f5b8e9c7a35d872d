"""Every shipped config parses and instantiates: model, data, trainer, optimizer."""

from pathlib import Path

import pytest

from lightning_app.cli import AppCLI

CONFIGS = sorted(Path(__file__).parents[1].joinpath("configs").glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_config_instantiates(config, in_tmp):
    cli = AppCLI(args=["--config", str(config), "--trainer.logger", "false"], run=False)
    assert cli.model is not None and cli.datamodule is not None
    first_line = config.read_text().splitlines()[0]
    assert first_line.startswith("# python -m lightning_app"), f"{config.name} must start with its command"
