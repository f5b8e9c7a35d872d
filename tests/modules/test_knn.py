"""kNN: the search against scikit-learn and a full sort, tie-breaks, checkpoints, bad input."""

import copy
import csv
import os
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

from datamodules.base import ImageDataModule
from lightning_app.cli import main
from modules import KNN
from modules import knn_l2
from modules.knn_search import nearest_neighbours, vote

METRICS = {"l1": "manhattan", "l2": "euclidean", "cosine": "cosine"}
BUDGETS = (2**30, 480, 24 * 12)  # one block; 40 memory rows a block; 24 rows (k + 1 is never split)
L2_FILTERS = [("l2", "bfloat16"), ("l2", "float32")]  # each forced, whatever this CPU does fast


@pytest.mark.parametrize(("distance", "precision"), [("l1", "auto"), ("cosine", "auto"), *L2_FILTERS])
@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_predictions_and_distances_match_scikit_learn_at_any_chunk_size(distance, precision, weights):
    generator = torch.Generator().manual_seed(0)
    memory, queries = torch.randn(300, 20, generator=generator), torch.randn(50, 20, generator=generator)
    labels = torch.randint(0, 4, (300,), generator=generator)
    sklearn = KNeighborsClassifier(5, algorithm="brute", metric=METRICS[distance], weights=weights)
    sklearn.fit(memory.numpy(), labels.numpy())
    expected_distances, expected_indices = sklearn.kneighbors(queries.numpy())
    for budget in BUDGETS:
        distances, indices = nearest_neighbours(queries, memory, 5, distance, budget, precision)
        assert indices.tolist() == expected_indices.tolist()
        found = distances.sqrt() if distance == "l2" else distances  # L2 comes back squared
        torch.testing.assert_close(found, torch.from_numpy(expected_distances).float(), rtol=1e-4, atol=1e-4)
        predictions = vote(distances, labels[indices], 4, weights, distance).argmax(1)
        assert predictions.tolist() == sklearn.predict(queries.numpy()).tolist()


@pytest.mark.parametrize("budget", BUDGETS[:1] + (24, 36))
def test_equal_distances_go_to_the_first_memorised_and_equal_votes_to_the_smallest_class(budget):
    # Every row is at squared distance 4 from the origin except the last (25 + 25).
    memory = torch.tensor([[5.0, 5.0], [2.0, 0.0], [0.0, 2.0], [-2.0, 0.0], [0.0, -2.0]])
    labels = torch.tensor([0, 3, 2, 2, 1])
    distances, indices = nearest_neighbours(torch.zeros(1, 2), memory, 3, "l2", budget)
    assert indices.tolist() == [[1, 2, 3]] and distances.tolist() == [[4.0, 4.0, 4.0]]
    assert vote(distances, labels[indices], 4, "uniform", "l2").argmax(1).tolist() == [2]  # votes 3, 2, 2
    distances, indices = nearest_neighbours(torch.zeros(1, 2), memory, 2, "l2", budget)
    assert vote(distances, labels[indices], 4, "uniform", "l2").argmax(1).tolist() == [2]  # 3 and 2 tie: 2


def _reference(queries, memory, k):
    """Every distance summed directly, then a stable full sort: the rule the search must follow."""
    everything = torch.arange(len(memory)).expand(len(queries), -1)
    return knn_l2.exact_sq_l2(queries, memory, everything).sort(dim=1, stable=True).indices[:, :k]


@pytest.mark.parametrize(
    ("case", "precision", "passes"),
    [
        ("digit-like", "bfloat16", 1),  # bfloat16 certifies
        ("noise", "bfloat16", 2),  # float32 must
        ("ties", "bfloat16", 3),  # neither can: every row is scored
        ("digit-like", "float32", 1),
        ("noise", "float32", 1),
        ("ties", "float32", 2),
    ],
)
def test_l2_filter_and_refine_is_exact_whichever_pass_certifies(case, precision, passes, monkeypatch):
    generator = torch.Generator().manual_seed(0)
    if case == "digit-like":  # clusters: the k-th neighbour is far nearer than the 33rd
        centres = torch.randn(5, 64, generator=generator) * 4
        memory = centres.repeat(20, 1) + torch.randn(100, 64, generator=generator)
        queries = centres + torch.randn(5, 64, generator=generator)
    elif case == "noise":  # 784 uniform pixels, with a bfloat16 bound too wide to certify anything
        memory, queries = torch.rand(2000, 784, generator=generator), torch.rand(5, 784, generator=generator)
        monkeypatch.setattr(knn_l2, "BF16_UNIT", 1.0)
    else:  # the origin is at distance exactly 1 from all 128 rows +-e_i, then far from 50 more
        memory = torch.cat([torch.eye(64), -torch.eye(64), 5 + torch.rand(50, 64, generator=generator)])
        memory = memory[torch.randperm(len(memory), generator=generator)]
        queries = torch.zeros(1, 64)
    scored = []
    exact = knn_l2.exact_sq_l2
    monkeypatch.setattr(knn_l2, "exact_sq_l2", lambda *args: scored.append(1) or exact(*args))
    distances, indices = nearest_neighbours(queries, memory, 3, "l2", 2**30, precision)
    assert min(len(scored), 3) == passes
    assert indices.tolist() == _reference(queries, memory, 3).tolist()
    if case == "ties":
        assert distances.tolist() == [[1.0, 1.0, 1.0]] and indices[0].tolist() == sorted(indices[0].tolist())


@pytest.mark.parametrize("precision", ["bfloat16", "float32"])
def test_l2_with_more_neighbours_than_the_usual_candidates(precision):
    generator = torch.Generator().manual_seed(1)
    memory, queries = torch.randn(500, 16, generator=generator), torch.randn(20, 16, generator=generator)
    distances, indices = nearest_neighbours(queries, memory, 40, "l2", 2**20, precision)
    assert indices.tolist() == _reference(queries, memory, 40).tolist()
    assert bool((distances[:, 1:] >= distances[:, :-1]).all())


def test_distance_weights_count_only_exact_matches_when_there_are_any():
    distances = torch.tensor([[0.0, 1.0, 1.0], [1.0, 4.0, 4.0]])
    labels = torch.tensor([[0, 1, 1], [0, 1, 1]])
    scores = vote(distances, labels, 2, "distance", "l2")  # squared L2: weights 1, 1/2, 1/2
    assert scores.tolist() == [[1.0, 0.0], [1.0, 1.0]]


def test_a_reloaded_equal_memory_keeps_its_index_and_a_changed_one_gets_a_new_one():
    torch.manual_seed(0)
    model = KNN(input_shape=(1, 2, 2), num_classes=2, k=1)
    model.memory, model.memory_labels = torch.randn(50, 4), torch.randint(0, 2, (50,))
    queries = torch.randn(7, 1, 2, 2)
    first, index = model(queries), model.index
    state = {name: value.clone() for name, value in model.state_dict().items()}
    memory = model.memory
    model.load_state_dict(state)  # new tensors, the same values: as the test after fit reloads the best checkpoint
    assert model.memory is memory  # kept, not copied again
    torch.testing.assert_close(model(queries), first)
    assert model.index is index and index.memory is model.memory
    state["memory"][3, 1] += 1.0
    assert model.memory[3, 1] != state["memory"][3, 1]  # the model holds its own values, not the loaded tensors
    model.load_state_dict(state)
    model(queries)
    assert model.index is not index and model.index.memory is model.memory
    assert torch.equal(model.memory, state["memory"]) and model.memory.data_ptr() != state["memory"].data_ptr()
    torch.testing.assert_close(model.index.sq_norms, model.memory.square().sum(1))


@pytest.mark.parametrize("precision", ["bfloat16", "float32"])
def test_the_search_reuses_its_buffer_and_what_it_held_changes_no_answer(precision):
    generator = torch.Generator().manual_seed(0)
    memory, first, second = (torch.randn(n, 12, generator=generator) for n in (400, 30, 20))
    index = knn_l2.MemoryIndex(memory, precision)
    budget = 2 * 4 * 400 * 4 // 3 * 10  # ten queries a chunk: the buffer is used three times per call
    nearest_neighbours(first, index, 3, "l2", budget)
    buffer = index.scratch.data_ptr()
    reused = nearest_neighbours(second, index, 3, "l2", budget)  # in the products and rows `first` left
    assert index.scratch.data_ptr() == buffer
    fresh = nearest_neighbours(second, knn_l2.MemoryIndex(memory, precision), 3, "l2", budget)
    assert reused[1].tolist() == fresh[1].tolist() and reused[0].tolist() == fresh[0].tolist()
    smaller = nearest_neighbours(second, index, 3, "l2", budget // 2)  # a smaller budget: a part of the buffer
    assert index.scratch.data_ptr() == buffer and smaller[1].tolist() == fresh[1].tolist()
    model = KNN(input_shape=(12,), k=3)
    model.memory, model.memory_labels, model.index = memory, torch.zeros(400, dtype=torch.long), index
    model.teardown("test")  # the end of a run gives the buffer back
    assert index.scratch is None


def test_searches_in_threads_at_once_each_get_their_own_answers_and_a_model_with_an_index_copies():
    generator = torch.Generator().manual_seed(0)
    memory = torch.randn(2000, 32, generator=generator)
    queries = [torch.randn(100, 32, generator=generator) for _ in range(4)]
    index = knn_l2.MemoryIndex(memory, "float32")
    expected = [nearest_neighbours(q, knn_l2.MemoryIndex(memory, "float32"), 3, "l2", 2**19)[1] for q in queries]
    answers: dict[int, list] = {i: [] for i in range(4)}

    def search(i: int) -> None:
        for _ in range(10):
            answers[i].append(nearest_neighbours(queries[i], index, 3, "l2", 2**19)[1])

    threads = [threading.Thread(target=search, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(torch.equal(answer, expected[i]) for i in range(4) for answer in answers[i])  # one shared buffer mixed them
    model = KNN(input_shape=(32,), k=3)
    model.memory, model.memory_labels = memory, torch.zeros(2000, dtype=torch.long)
    model(queries[0])  # builds the index and its buffer
    copied = copy.deepcopy(model)  # a lock does not copy: the index leaves it and its buffer behind
    assert copied.index.scratch is None and torch.equal(copied(queries[1]), model(queries[1]))


def test_bad_input_errors():
    with pytest.raises(ValueError, match="k=0"):
        KNN(input_shape=(1, 2, 2), k=0)
    model = KNN(input_shape=(1, 2, 2), num_classes=2, k=5)
    with pytest.raises(RuntimeError, match="nothing memorised.*--ckpt_path"):
        model(torch.zeros(1, 1, 2, 2))
    model.memory, model.memory_labels = torch.zeros(3, 4), torch.zeros(3, dtype=torch.long)
    with pytest.raises(ValueError, match="k=5 needs 1 <= k <= 3"):
        model(torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match="queries have 9 features but the memory rows have 4"):
        model(torch.zeros(1, 1, 3, 3))


@pytest.mark.parametrize("precision", ["bf16-true", "16-true", "64-true", "32-true", "bf16-mixed", "16-mixed"])
def test_a_precision_that_casts_the_memory_is_refused_at_setup(precision):
    model = KNN(input_shape=(1, 2, 2), num_classes=2, k=1)
    model.trainer = SimpleNamespace(precision=precision, strategy=SimpleNamespace())
    if precision.endswith("-true") and precision != "32-true":
        with pytest.raises(ValueError, match=rf"--trainer.precision {precision}: KNN memorises and searches float32.*32-true"):
            model.setup("fit")
    else:
        model.setup("fit")


def test_the_vote_follows_the_distances_dtype_not_the_default_one():
    labels, distances = torch.tensor([[0, 1, 1]]), torch.tensor([[1.0, 2.0, 4.0]])
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # what a "true" precision's forward context sets
    try:
        scores = vote(distances, labels, 2, "distance", "l1")
    finally:
        torch.set_default_dtype(default)
    assert scores.dtype == torch.float32 and scores.tolist() == [[1.0, 0.75]]


@pytest.mark.parametrize("distance", ["l1", "l2", "cosine"])
def test_no_queries_get_no_neighbours(distance):
    distances, indices = nearest_neighbours(torch.empty(0, 8), torch.randn(100, 8), 3, distance, 2**20)
    assert distances.shape == indices.shape == (0, 3) and indices.dtype == torch.long

@pytest.mark.parametrize("distance", ["l1", "l2", "cosine"])
def test_a_search_in_another_precision_than_float32_is_refused(distance):
    memory, queries = torch.randn(100, 8, dtype=torch.float64), torch.randn(5, 8)
    with pytest.raises(TypeError, match=r"queries \(torch.float32\) and memory \(torch.float64\) must both be float32.*\.float\(\)"):
        nearest_neighbours(queries, memory, 3, distance, 2**20)
    with pytest.raises(TypeError, match=r"queries \(torch.float16\)"):
        nearest_neighbours(queries.half(), memory.float(), 3, distance, 2**20)


def test_test_without_fit_or_checkpoint_says_what_to_do(in_tmp):
    with pytest.raises(RuntimeError, match="nothing memorised"):
        main(["test", "--config", str(CONFIGS / "digits_knn.yaml"), "--trainer.logger", "false"])


CONFIGS = Path(__file__).parents[2] / "configs"


def test_fit_memorises_the_training_split_and_test_restores_it_from_the_checkpoint(in_tmp):
    args = ["--config", str(CONFIGS / "digits_knn.yaml"), "--trainer.logger", "false", "--model.distance", "l1"]
    args += ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    fit = main(["fit", *args])
    train_images, train_labels = fit.datamodule.splits["train"]
    checkpoint = Path(fit.trainer.checkpoint_callback.dirpath) / "last.ckpt"  # the run's own folder
    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    assert state["memory"].shape == (len(train_images), 64)
    assert sorted(state["memory_labels"].tolist()) == sorted(train_labels.tolist())

    tested = main(["test", *args, "--ckpt_path", str(checkpoint)])
    assert tested.trainer.callback_metrics["test/acc"] == fit.trainer.callback_metrics["test/acc"] > 0.95
    predicted = main(["predict", *args, "--ckpt_path", str(checkpoint)])
    predictions = torch.cat(predicted.trainer.predict_loop.predictions)
    # The documented rule, the slow way: full sort, stable, so equal distances keep memory order.
    test_images = predicted.datamodule.normalize(predicted.datamodule.splits["test"][0]).flatten(1)
    order = torch.cdist(test_images, state["memory"], p=1).sort(dim=1, stable=True).indices[:, :3]
    votes = torch.zeros(len(test_images), 10).scatter_add_(1, state["memory_labels"][order], torch.ones(len(order), 3))
    assert predictions.tolist() == votes.argmax(1).tolist()


def _metrics(folder: Path) -> dict[str, float]:
    """The last value of every metric in a CSVLogger's metrics.csv."""
    rows = list(csv.DictReader((next(folder.rglob("metrics.csv"))).open()))
    return {key: float(row[key]) for row in rows for key in row if row[key] and key.endswith("acc")}


@pytest.mark.slow
def test_ddp_memorises_shards_and_predicts_exactly_as_one_process(mnist_dir, in_tmp):
    args = ["--config", str(CONFIGS / "mnist_knn.yaml"), "--data.data_dir", str(mnist_dir), "--data.batch_size", "32"]
    args += ["--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false", "--checkpoint.save_last", "true"]
    args += ["--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.init_args.save_dir"]
    main(["fit", *args, "one"])
    command = [sys.executable, "-m", "lightning_app", "fit", *args, "two", "--trainer.strategy", "ddp", "--trainer.devices", "2"]
    environment = {**os.environ, "PYTHONPATH": str(CONFIGS.parent)}
    result = subprocess.run(command, cwd=in_tmp, env=environment, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = (torch.load(next((in_tmp / d).rglob("last.ckpt")), weights_only=True)["state_dict"] for d in ("one", "two"))
    assert torch.equal(one["memory"], two["memory"]) and torch.equal(one["memory_labels"], two["memory_labels"])
    assert len(one["memory"]) == 180  # 200 training images less the 10% validation split
    # Each rank answered half the queries against the whole memory: the same accuracies follow.
    metrics = _metrics(in_tmp / "one")
    assert {"val/acc", "test/acc"} <= set(metrics) and metrics == _metrics(in_tmp / "two")


class ColourBlocks(ImageDataModule):
    """3x6x6 colour images whose class is the brightest channel: any ImageDataModule, not only MNIST's."""

    input_shape, num_classes, mean, std = (3, 6, 6), 3, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)

    def load_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(int(split == "test"))
        labels = torch.randint(0, 3, (120,), generator=generator)
        images = torch.randint(0, 100, (120, 3, 6, 6), generator=generator, dtype=torch.uint8)
        images[torch.arange(120), labels] += 150
        return images, labels


def test_colour_images_fit_and_test_on_any_image_data_module(in_tmp):
    model, data = KNN(input_shape=(3, 6, 6), num_classes=3, k=1), ColourBlocks(batch_size=32, val_split=0.25)
    trainer = L.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=data)
    assert model.memory.shape == (90, 108)
    assert trainer.test(model, datamodule=data, ckpt_path="best")[0]["test/acc"] == 1.0


@pytest.mark.parametrize("distance", ["l1", "l2", "cosine"])
def test_non_finite_queries_or_memory_are_refused_naming_the_row(distance):
    memory, queries = torch.randn(30, 6), torch.randn(5, 6)
    bad_queries = queries.clone()
    bad_queries[3, 2] = float("nan")
    with pytest.raises(ValueError, match=r"the queries: 1 rows hold NaN or infinite values, the first is row 3; check the inputs"):
        nearest_neighbours(bad_queries, memory, 3, distance, 2**20)
    bad_memory = memory.clone()
    bad_memory[[12, 20], 0] = float("inf")
    with pytest.raises(ValueError, match=r"the memory: 2 rows hold NaN.* infinite.* the first is row 12"):
        nearest_neighbours(queries, bad_memory, 3, distance, 2**20)
    huge = queries * 1e37  # finite, but its row sums overflow: checked value by value, and searched
    assert nearest_neighbours(huge, memory, 3, distance, 2**20)[1].shape == (5, 3)


def test_a_nan_pixel_stops_the_knn_instead_of_scoring_chance():
    model = KNN(input_shape=(1, 2, 2), num_classes=2, k=1)
    model.memory, model.memory_labels = torch.randn(8, 4), torch.arange(8) % 2
    images = torch.randn(3, 1, 2, 2)
    images[1, 0, 0, 1] = float("nan")
    with pytest.raises(ValueError, match="the queries: 1 rows hold NaN or infinite values, the first is row 1"):
        model(images)


@pytest.mark.parametrize("rows, dim, gathered_into", [(5000, 16, "the work buffer"), (40, 512, "new memory")])
def test_l2_rescoring_gathers_into_the_spent_products_where_they_fit(rows, dim, gathered_into, monkeypatch):
    # 5,000 bfloat16 products a query hold 32 candidate rows of 16 float32; 40 do not hold 32 rows of 512.
    generator = torch.Generator().manual_seed(2)
    memory, queries = torch.randn(rows, dim, generator=generator), torch.randn(30, dim, generator=generator)
    buffers = []
    exact = knn_l2.exact_sq_l2

    def recorded(queries, memory, candidates, rows="scored against every row"):
        if not isinstance(rows, str):  # rescore's calls
            buffers.append("new memory" if rows is None else "the work buffer")
        return exact(queries, memory, candidates, None if isinstance(rows, str) else rows)

    monkeypatch.setattr(knn_l2, "exact_sq_l2", recorded)
    distances, indices = nearest_neighbours(queries, memory, 3, "l2", 2**20, "bfloat16")
    assert indices.tolist() == _reference(queries, memory, 3).tolist()
    assert set(buffers) == {gathered_into}
