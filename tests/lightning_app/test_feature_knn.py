"""The feature-space kNN monitor: val/knn_acc from a trained model's penultimate features."""

import lightning as L
import torch
from sklearn.neighbors import KNeighborsClassifier

from datamodules import Digits
from lightning_app.feature_knn import FeatureKNN
from modules import MLP


def test_logs_the_knn_accuracy_of_the_penultimate_features(in_tmp):
    torch.manual_seed(0)
    model, data = MLP(input_shape=(1, 8, 8), hidden_sizes=[32, 16]), Digits(batch_size=64)
    monitor = FeatureKNN(k=5, distance="cosine", max_train_samples=500)
    trainer = L.Trainer(
        max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False, callbacks=[monitor]
    )
    trainer.fit(model, datamodule=data)
    logged = trainer.callback_metrics["val/knn_acc"].item()

    # The same measurement by hand: the 16 inputs of the head, scikit-learn's vote.
    model.eval()
    features = {}
    model.net[-1].register_forward_pre_hook(lambda _, inputs: features.update(x=inputs[0]))
    embedded = []
    for split, count in (("train", 500), ("val", None)):
        loader = data._loader(split, shuffle=split == "train")  # the seeded order the monitor read
        images = torch.cat([b[0] for b in loader])[:count]
        labels = torch.cat([b[1] for b in loader])[:count]
        with torch.no_grad():
            model(data.normalize(images))
        embedded.append((features["x"].numpy(), labels.numpy()))
    (train_x, train_y), (val_x, val_y) = embedded
    expected = KNeighborsClassifier(5, algorithm="brute", metric="cosine").fit(train_x, train_y).score(val_x, val_y)
    assert abs(logged - expected) <= 1 / len(val_y)  # a tie broken the other way, at most
    assert logged > 0.5  # well above chance (0.1) after two epochs
