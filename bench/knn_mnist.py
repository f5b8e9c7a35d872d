"""kNN test accuracy on real MNIST for k = 1, 3, 5 with L1 and L2, through the CLI as a user runs it.

    python bench/knn_mnist.py

Data: the real MNIST test set from ../shared/data/mnist, split by ``bench/real_data.py``: its first
8,000 images are the training split (``fit`` holds 10% out for validation, so 7,200 are memorised),
its last 2,000 are the test split. Each row is ``fit --config configs/mnist_knn.yaml --model.k K
--model.distance D``; the scikit-learn column is ``KNeighborsClassifier(algorithm="brute")`` on the
same memorised images (read from the checkpoint) and the same normalised test images.
"""

import os
import sys
import tempfile
from pathlib import Path

import torch
from sklearn.neighbors import KNeighborsClassifier

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.machine import describe  # noqa: E402
from bench.real_data import write_mnist_split  # noqa: E402
from lightning_app.cli import main  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "mnist_knn.yaml"


def main_bench() -> None:
    with tempfile.TemporaryDirectory() as folder:
        data_dir = write_mnist_split(Path(folder) / "mnist")
        os.chdir(folder)
        print(describe("cpu"))
        print("| k | distance | val acc (800) | test acc (2,000) | test error | scikit-learn test acc |")
        print("| --- | --- | --- | --- | --- | --- |")
        for distance, metric in (("l1", "manhattan"), ("l2", "euclidean")):
            for k in (1, 3, 5):
                run = f"{distance}-k{k}"
                cli = main(
                    ["fit", "--config", str(CONFIG), "--data.data_dir", str(data_dir), "--model.k", str(k)]
                    + ["--model.distance", distance, "--trainer.logger", "false", "--trainer.default_root_dir", run]
                    + ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
                )
                metrics = cli.trainer.callback_metrics
                state = torch.load(cli.trainer.checkpoint_callback.best_model_path, weights_only=True)["state_dict"]
                test_images, test_labels = cli.datamodule.splits["test"]
                sklearn = KNeighborsClassifier(k, algorithm="brute", metric=metric)
                sklearn.fit(state["memory"].numpy(), state["memory_labels"].numpy())
                reference = sklearn.score(cli.datamodule.normalize(test_images).flatten(1).numpy(), test_labels.numpy())
                test_acc = metrics["test/acc"].item()
                print(
                    f"| {k} | {distance.upper()} | {cli.trainer.checkpoint_callback.best_model_score.item():.2%} | {test_acc:.2%} "
                    f"| {1 - test_acc:.2%} | {reference:.2%} |",
                    flush=True,
                )


if __name__ == "__main__":
    main_bench()
