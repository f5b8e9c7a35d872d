"""The CNN's construction-time checks: layer sizes, parameter counts, initialisation, residual blocks."""

import math
from pathlib import Path

import pytest
import torch
from lightning.pytorch.utilities.model_summary import ModelSummary

from lightning_app.cli import AppCLI, main
from modules import CNN
from modules.cnn import Residual
from datamodules import CIFAR10
from tests.fakes import accept_archive, write_cifar10_archive

CONFIGS = Path(__file__).parents[2] / "configs"


def test_lenet5_sizes_and_parameter_counts_in_the_summary():
    model = CNN((1, 28, 28), 10, channels=[6, 16], kernel_size=5, padding=[2, 0], batch_norm=False, hidden_sizes=[120, 84])
    summary = ModelSummary(model, max_depth=-1)
    params = dict(zip(summary.layer_names, summary.param_nums))
    assert params["features.conv1"] == 6 * (5 * 5 * 1 + 1) == 156  # K (F^2 C + 1)
    assert params["features.conv2"] == 16 * (5 * 5 * 6 + 1) == 2416
    assert model.output_shapes == {
        "conv1": (6, 28, 28),  # (28 - 5 + 2*2) / 1 + 1
        "pool1": (6, 14, 14),
        "conv2": (16, 10, 10),  # (14 - 5 + 0) / 1 + 1
        "pool2": (16, 5, 5),
    }
    assert model.features(torch.zeros(1, 1, 28, 28)).shape == (1, 16, 5, 5)
    assert params["classifier.fc1"] == 16 * 5 * 5 * 120 + 120


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"channels": [8, 8], "kernel_size": [3, 4], "stride": [1, 3], "padding": 0, "pool": "none"},
         r"conv2 \(height\) does not fit its input: .* = \(30 - 4 \+ 2\*0\) / 3 \+ 1 = 9.66667"),
        ({"channels": [8], "kernel_size": 7, "padding": 0, "pool": "none", "input_shape": (3, 5, 5)},
         r"conv1 \(height\) .* \(5 - 7 \+ 2\*0\) / 1 \+ 1 = -1"),
        ({"channels": [8, 8, 8, 8, 8, 8], "pool": "max", "input_shape": (1, 28, 28)},
         r"pool3 \(height\) .* \(7 - 2 \+ 2\*0\) / 2 \+ 1 = 3.5"),
        ({"channels": [8, 8], "stride": [1, 1, 1]}, "stride has 3 values for 2 layers"),
    ],
)
def test_layers_that_do_not_fit_fail_at_construction(args, message):
    with pytest.raises(ValueError, match=message):
        CNN(**{"input_shape": (3, 32, 32), **args})


def test_a_config_that_does_not_fit_fails_before_any_data_is_loaded(in_tmp):
    args = ["--config", str(CONFIGS / "cifar10_cnn.yaml"), "--trainer.logger", "false", "--data.data_dir", "absent",
            "--model.init_args.kernel_size", "4"]
    # 32 -> 31 -> 30 -> pool 15 -> 14 -> 13 -> pool 6.5
    with pytest.raises(ValueError, match=r"pool4 \(height\) does not fit its input: .* = \(13 - 2 \+ 2\*0\) / 2 \+ 1 = 6.5"):
        AppCLI(args=args, run=False)
    assert not (in_tmp / "absent").exists()


@pytest.mark.parametrize("init", ["kaiming", "xavier"])
def test_initialisation(init):
    torch.manual_seed(0)
    model = CNN((3, 32, 32), 10, channels=[256], kernel_size=3, init=init)
    weight = model.features.conv1.weight
    fan_in, fan_out = 3 * 9, 256 * 9
    if init == "kaiming":
        assert weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.05)
    else:
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert weight.abs().max().item() <= bound and weight.abs().max().item() > 0.95 * bound
    assert torch.count_nonzero(model.features.conv1.bias) == 0


def test_residual_block_adds_its_input():
    block = Residual(4, batch_norm=False, activation="relu")
    torch.nn.init.zeros_(block.conv2.weight)
    torch.nn.init.zeros_(block.conv2.bias)
    x = torch.randn(2, 4, 6, 6)
    assert torch.equal(block(x), x)  # f(x) = relu(0) = 0
    torch.nn.init.constant_(block.conv2.bias, 1.0)
    assert torch.allclose(block(x), x + 1.0)


def test_logit_scale_multiplies_the_scores():
    torch.manual_seed(0)
    images = torch.randn(3, 3, 8, 8)
    plain = CNN((3, 8, 8), 5, channels=[4]).eval()
    scaled = CNN((3, 8, 8), 5, channels=[4], logit_scale=0.125).eval()
    scaled.load_state_dict(plain.state_dict())
    assert torch.allclose(scaled(images), plain(images) * 0.125)


def test_resnet_config_fits_and_tests_end_to_end(in_tmp, monkeypatch):
    accept_archive(monkeypatch, write_cifar10_archive(in_tmp / "cifar", n_per_file=16), CIFAR10)
    cli = main([
        "fit", "--config", str(CONFIGS / "cifar10_resnet.yaml"), "--trainer.logger", "false",
        "--trainer.max_epochs", "1", "--trainer.precision", "32-true", "--trainer.enable_progress_bar", "false",
        "--data.data_dir", str(in_tmp / "cifar"), "--data.batch_size", "32", "--model.init_args.channels", "[8, 8, 8, 8]",
        "--lr_scheduler.init_args.warmup_steps", "1",
    ])
    assert cli.model.features.conv4.out_channels == 8 and isinstance(cli.model.features.res4, Residual)
    assert {"test/acc", "test/loss"} <= set(cli.trainer.callback_metrics)  # the best checkpoint was tested
    assert cli.trainer.lr_scheduler_configs[0].scheduler.total_steps == 3  # ceil(72 / 32)
