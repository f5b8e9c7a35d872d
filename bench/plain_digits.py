"""`configs/digits_mlp.yaml` as a plain PyTorch script: the whole-process baseline of bench/speed.py.

The same work as `python -m lightning_app fit --config configs/digits_mlp.yaml` without its record:
scikit-learn's digits split as `datamodules.Digits` splits them (20% test, 10% of the rest
validates, seed 0), normalised the same way, the 64-128-64-10 ReLU MLP trained 20 epochs by
batches of 64 with `torch.optim.Adam(params, lr=1e-3)`, validated after every epoch, the best
epoch's weights (by validation accuracy) tested at the end. No logger, checkpoint file, progress
bar or pictures. Prints the seconds of training and the test accuracy.

    python bench/plain_digits.py
"""

import copy
import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

MEAN, STD = 0.3053, 0.3759  # datamodules.Digits'
EPOCHS, BATCH = 20, 64


def splits(seed: int = 0, val_split: float = 0.1, test_split: float = 0.2) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Train, validation and test images (normalised, N x 64) and labels, split as `datamodules.Digits` does."""
    digits = load_digits()
    images = torch.from_numpy(np.round(digits.images * 255 / 16).astype(np.uint8)).flatten(1)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    n_test = round(len(images) * test_split)
    rest, test = perm[: len(perm) - n_test], perm[len(perm) - n_test :]
    n_val = round(len(rest) * val_split)
    rest = rest[torch.randperm(len(rest), generator=torch.Generator().manual_seed(seed))]
    chosen = {"train": rest[n_val:], "val": rest[:n_val], "test": test}
    return {name: ((images[i].float() / 255.0 - MEAN) / STD, labels[i]) for name, i in chosen.items()}


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(images).argmax(1) == labels).float().mean().item()


def main() -> None:
    torch.manual_seed(0)
    data = splits()
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1.0e-3)
    images, labels = data["train"]
    best, best_state = -1.0, None
    start = time.perf_counter()
    for _ in range(EPOCHS):
        for batch in torch.randperm(len(images)).split(BATCH):
            loss = F.cross_entropy(model(images[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        val = accuracy(model, *data["val"])
        if val > best:
            best, best_state = val, copy.deepcopy(model.state_dict())
    train_seconds = time.perf_counter() - start
    model.load_state_dict(best_state)
    print(f"train_seconds {train_seconds:.3f}, best val/acc {best:.4f}, test/acc {accuracy(model, *data['test']):.4f}")


if __name__ == "__main__":
    main()
