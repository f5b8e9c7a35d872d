import re
import sys

import pytest
import torch

from bench import bounds
from datamodules import Text


@pytest.mark.parametrize("characters", [1_000, 4_161, 5_000])
def test_the_bound_counts_the_windows_the_text_data_module_validates(tmp_path, characters):
    path = tmp_path / "input.txt"
    path.write_text("".join(chr(97 + i % 26) for i in range(characters)))
    data = Text(path=str(path), block_size=bounds.BLOCK, val_split=0.1)
    data.setup("fit")
    windows = sum(len(offsets) for (offsets,) in data.val_dataloader())
    assert windows == bounds.validation_windows(characters)


def test_the_gpt_forward_is_counted_at_two_operations_per_weight_and_character():
    model = bounds.Transformer(bounds.TINY_SHAKESPEARE_VOCAB, block_size=bounds.BLOCK, bias=False)
    weights = sum(p.numel() for name, p in model.named_parameters() if "position" not in name and p.dim() == 2)
    per_window = bounds.gpt_flops_per_window()
    assert 2 * weights * bounds.BLOCK <= per_window <= 1.1 * 2 * weights * bounds.BLOCK  # attention: a few %


@pytest.mark.slow  # a whole-text pass, fresh Pythons and the scikit-learn script: about 30 s
def test_the_bounds_script_prints_both_floors(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["bounds.py", "--rounds", "1"])
    bounds.main()
    printed = capsys.readouterr().out
    validation = re.search(r"ours \(8 x 1,742 windows\) ([\d.]+) s, nanoGPT's \(4,320 windows\) ([\d.]+) s", printed)
    assert validation and float(validation[1]) > 3 * float(validation[2]) > 0
    assert re.search(r"any run, at least: [\d.]+ s", printed) and re.search(r"the text sample .*: [\d.]+ s", printed)
    assert torch.backends.cpu.get_cpu_capability() in printed
