"""Classifier pictures: what the confusion matrix, per-class accuracy and mistakes show is what the model predicts."""

import csv

import lightning as L
import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix

from datamodules import Digits
from lightning_app.pictures import ClassifierPictures
from lightning_app.pictures.classifier import probabilities
from lightning_app.pictures.confusion import draw_confusion, read_confusion
from lightning_app.pictures.subset import SeededSubset, subset_keys
from modules import MLP
from tests.lightning_app.pictures.png import assert_picture


@pytest.fixture(scope="module")
def trained():
    """An MLP on scikit-learn's digits after one short epoch: right on most test digits, wrong on many."""
    torch.manual_seed(0)
    model, data = MLP(input_shape=(1, 8, 8), hidden_sizes=[16]), Digits(batch_size=64)
    L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False).fit(model, datamodule=data)
    data.setup("test")
    images, labels = data.splits["test"]
    with torch.no_grad():
        scores = model.eval()(data.normalize(images))
    return model, scores, labels


def picture_folder(folder, model, callback: ClassifierPictures, batch_size: int = 64):
    trainer = L.Trainer(logger=False, enable_progress_bar=False, default_root_dir=folder, callbacks=[callback])
    trainer.test(model, datamodule=Digits(batch_size=batch_size), verbose=False)
    return folder / "pictures" / "test"


def rows(path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_confusion_matrix_and_accuracy_per_class_count_the_models_predictions(trained, tmp_path):
    model, scores, labels = trained
    folder = picture_folder(tmp_path, model, ClassifierPictures(max_samples=10_000))  # more than the 359 test digits
    names, counts = read_confusion(folder / "confusion_matrix.csv")
    predicted = scores.argmax(1)
    assert names == [str(i) for i in range(10)]
    np.testing.assert_array_equal(counts, confusion_matrix(labels, predicted, labels=range(10)))
    per_class = rows(folder / "per_class_accuracy.csv")
    for c, row in enumerate(per_class):
        chosen = labels == c
        assert int(row["total"]) == chosen.sum() and int(row["correct"]) == (predicted[chosen] == c).sum()
    assert_picture(folder / "confusion_matrix.png", 1124, 650)  # two 5-inch panels at 100 dpi; numbered: no colour bars
    assert_picture(folder / "per_class_accuracy.png", 600, 350)


@pytest.mark.parametrize("classes, named", [(10, True), (31, False)])
def test_confusion_panels_name_each_class_in_text_up_to_30(classes, named):
    names = [f"class {i}" for i in range(classes)]
    fig = draw_confusion(np.eye(classes, dtype=int) * 3 + 1, names, "test")
    numbered = classes <= 20
    assert len(fig.axes) == (2 if numbered else 4)  # a colour bar after each panel whose cells are not numbered
    counts, shares = fig.axes[0], fig.axes[1 if numbered else 2]
    for panel in (counts, shares):
        texts = [text.get_text() for text in panel.texts]
        assert texts[-2:] == ["predicted", "true"] and not panel.get_xticks().size and not panel.get_yticks().size
        assert (texts[-2 - 2 * classes : -2] == names + names) == named  # columns, then rows
        numbers = texts[: -2 - 2 * classes] if named else texts[:-2]
        assert len(numbers) == (classes**2 if numbered else 0)  # every cell holds samples; numbered up to 20


def test_a_seeded_subset_of_the_test_split(trained, tmp_path):
    model, scores, labels = trained
    callback = ClassifierPictures(max_samples=50, seed=3)
    _, counts = read_confusion(picture_folder(tmp_path / "a", model, callback) / "confusion_matrix.csv")
    chosen = subset_keys(torch.arange(len(labels)), 3).topk(50, largest=False).indices
    np.testing.assert_array_equal(counts, confusion_matrix(labels[chosen], scores[chosen].argmax(1), labels=range(10)))
    # The same samples whatever the batch size; another seed, other samples.
    _, again = read_confusion(picture_folder(tmp_path / "b", model, callback, batch_size=17) / "confusion_matrix.csv")
    np.testing.assert_array_equal(again, counts)
    other = subset_keys(torch.arange(len(labels)), 4).topk(50, largest=False).indices
    assert set(other.tolist()) != set(chosen.tolist())


def test_misclassified_grid_shows_the_most_confident_mistakes_only(trained, tmp_path):
    model, scores, labels = trained
    folder = picture_folder(tmp_path, model, ClassifierPictures(max_samples=10_000, num_misclassified=9))
    mistakes = rows(folder / "misclassified.csv")
    confidence, predicted = probabilities(scores).max(1)
    wrong = (predicted != labels).nonzero().squeeze(1)
    assert len(wrong) > 9 and len(mistakes) == 9
    for row in mistakes:
        sample = int(row["sample"])
        assert int(row["true"]) == labels[sample] and int(row["predicted"]) == predicted[sample] != labels[sample]
        assert float(row["confidence"]) == pytest.approx(confidence[sample].item(), abs=1e-5)
    shown = [float(row["confidence"]) for row in mistakes]
    assert shown == sorted(shown, reverse=True)
    assert min(shown) >= confidence[wrong].sort(descending=True).values[8].item() - 1e-5
    assert_picture(folder / "misclassified.png", 360, 475)  # 3 x 3 tiles of 1.2 inches, a title above


@pytest.mark.parametrize("batch_size", [1, 7, 64, 1000])
def test_a_seeded_subset_is_the_smallest_keys_whatever_the_batch_size(batch_size):
    subset = SeededSubset(size=50, seed=5)
    for positions in torch.arange(1000).split(batch_size):
        subset.add(positions, double=2 * positions)
    rows = subset.rows()
    expected = subset_keys(torch.arange(1000), 5).topk(50, largest=False).indices.sort().values
    assert torch.equal(rows["position"], expected) and torch.equal(rows["double"], 2 * expected)
    assert len(subset_keys(torch.arange(100_000), 5).unique()) == 100_000  # distinct positions, distinct keys


def test_vote_shares_are_kept_and_scores_become_probabilities():
    shares = torch.tensor([[0.0, 2 / 3, 1 / 3], [1.0, 0.0, 0.0]])
    assert torch.equal(probabilities(shares), shares)
    scores = torch.tensor([[2.0, -1.0, 0.5]])
    assert torch.allclose(probabilities(scores), scores.softmax(1))


def test_arguments_out_of_range_are_named():
    with pytest.raises(ValueError, match="max_samples=0"):
        ClassifierPictures(max_samples=0)
