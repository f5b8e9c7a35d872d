import re
import sys

from bench import val_batch


def test_the_validation_batch_benchmark_times_each_batch_size_on_the_same_loss(tmp_path, monkeypatch, capsys):
    text = tmp_path / "input.txt"
    text.write_text("To be, or not to be, that is the question.\n" * 150)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["val_batch.py", "--path", str(text), "--rounds", "1", "--batches", "7", "2"])
    val_batch.main()
    printed = capsys.readouterr().out
    losses = {int(b): float(loss) for b, loss in re.findall(r"val_batch_size (\d+): [\d.]+ s, val/loss ([\d.]+)", printed)}
    assert losses.keys() == {7, 2} and abs(losses[7] - losses[2]) < 1e-5  # the same windows, batched differently
    assert "val_batch_size 7: median" in printed and "val_batch_size 2: median" in printed
