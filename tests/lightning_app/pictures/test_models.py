"""Filters, attention maps, text samples and kNN neighbours, each on a tiny model: the numbers behind every picture."""

import csv
import textwrap

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from datamodules import Digits, Text
from lightning_app.pictures import AttentionMaps, ConvFilters, KNNNeighbours, TextSamples
from lightning_app.pictures.attention import attention_maps, attention_weights, draw_tokens
from lightning_app.pictures.filters import filter_mosaic
from modules import CNN, KNN, MLP, ViT, Transformer
from modules.layers import SelfAttention
from tests.fakes import write_text
from tests.lightning_app.pictures.png import assert_picture


def run(folder, model, data, callbacks, epochs=1, test=False, ckpt_path=None, **trainer_args) -> L.Trainer:
    trainer = L.Trainer(
        max_epochs=epochs, logger=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=folder, callbacks=callbacks, **{"enable_checkpointing": False, **trainer_args},
    )  # fmt: skip
    trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)
    if test:
        trainer.test(model, datamodule=data, verbose=False)
    return trainer


def rows(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def tiny_gpt(vocab: str) -> Transformer:
    torch.manual_seed(0)
    return Transformer(vocab, block_size=16, num_layers=2, nhead=2, d_model=16, dropout=0.1)  # dropout: draws from torch's RNG


def test_filter_mosaic_puts_zero_at_mid_grey():
    weight = torch.tensor([[[[1.0, -1.0], [0.0, 0.5]]], [[[2.0, 2.0], [2.0, 2.0]]]])  # (2 filters, 1 channel, 2, 2)
    mosaic = filter_mosaic(weight, max_filters=64)
    assert mosaic.shape == (2, 5, 3)  # two 2x2 filters side by side, one white column between
    np.testing.assert_allclose(mosaic[:, :2, 0], [[1.0, 0.0], [0.5, 0.75]])
    np.testing.assert_allclose(mosaic[:, 2], 1.0)
    np.testing.assert_allclose(mosaic[:, 3:], 1.0)  # a constant positive filter is all bright


def test_conv_filters_every_epoch_and_feature_map_sizes(tmp_path):
    torch.manual_seed(0)
    model = CNN(input_shape=(1, 8, 8), num_classes=10, channels=[4, 6], kernel_size=3, padding=1)
    run(tmp_path, model, Digits(batch_size=64), [ConvFilters(every_n_epochs=1)], epochs=2)
    folder = tmp_path / "pictures" / "filters"
    for name in ("conv1_epoch0", "conv1_epoch1", "conv1"):
        assert_picture(folder / f"{name}.png", 300, 200)  # 2 x 2 filters of 3x3, 0.8 inches each, 3 inches at least
    sizes = {row["layer"]: row["output (C x H x W)"] for row in rows(folder / "feature_maps.csv")}
    for layer, shape in model.output_shapes.items():  # the sizes the CNN computed from (W - F + 2P) / S + 1
        assert sizes[f"features.{layer}"] == "x".join(map(str, shape))
    assert sizes["classifier.out"] == "10"


@pytest.mark.parametrize("causal", [True, False])
def test_attention_weights_rows_sum_to_one_and_give_the_modules_output(causal):
    torch.manual_seed(0)
    attention = SelfAttention(d_model=8, nhead=2, dropout=0.0, causal=causal, bias=True, attention="sdpa").eval()
    x = torch.randn(3, 5, 8)
    weights = attention_weights(attention, x)  # (B, nh, T, T)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 2, 5))
    assert bool((weights.triu(1) == 0).all()) == causal
    v = attention.qkv(x).split(8, dim=2)[2].view(3, 5, 2, 4).transpose(1, 2)  # (B, nh, T, hs)
    mixed = (weights @ v).transpose(1, 2).reshape(3, 5, 8)
    torch.testing.assert_close(attention.proj(mixed), attention(x), atol=1e-5, rtol=1e-5)


def test_attention_maps_of_a_gpt_token_by_token(tmp_path):
    data = Text(path=str(write_text(tmp_path / "verse.txt")), block_size=16, batch_size=4, batches_per_epoch=3)
    model = tiny_gpt(data.vocab)
    run(tmp_path, model, data, [AttentionMaps(num_tokens=12)])
    for layer in range(2):
        assert_picture(tmp_path / "pictures" / "attention" / f"layer{layer}.png", 720, 395)  # 2 heads of 3.15 inches
    data.setup("fit")
    first = next(iter(data.val_dataloader()))[0][:1]  # the first validation window's offset
    maps = attention_maps(model, data.tokens[first.item() : first.item() + 12][None].long())
    assert len(maps) == 2 and maps[0].shape == (1, 2, 12, 12)
    torch.testing.assert_close(maps[1].sum(-1), torch.ones(1, 2, 12))


def test_attention_tokens_drawn_as_text_on_every_head():
    labels = ["a", "\\n", "_", "b"]
    fig = draw_tokens(torch.rand(3, 4, 4).softmax(-1), labels, "layer 0 after 1 epochs")
    heads, bar = fig.axes[:3], fig.axes[3:]
    assert len(bar) == 1 and [axis.get_title() for axis in heads] == ["head 0", "head 1", "head 2"]
    assert [text.get_text() for text in heads[0].texts] == labels + labels  # the columns, then the rows
    assert [text.get_text() for text in heads[2].texts] == labels  # the columns; the rows are the first head's
    assert [image.get_array().shape for image in heads[1].images] == [(4, 4)]


def test_attention_maps_of_a_vit_over_the_image(tmp_path):
    torch.manual_seed(0)
    model = ViT(input_shape=(1, 8, 8), patch_size=4, num_layers=1, nhead=2, d_model=16, pool="cls")
    run(tmp_path, model, Digits(batch_size=64), [AttentionMaps()])
    assert_picture(tmp_path / "pictures" / "attention" / "layer0.png", 540, 280)  # 2 heads of 2.4 inches
    (weights,) = attention_maps(model, torch.zeros(1, 1, 8, 8))
    assert weights.shape == (1, 2, 5, 5)  # the class token and 2 x 2 patches


def test_text_samples_one_row_per_validation_and_no_effect_on_training(tmp_path):
    data = Text(path=str(write_text(tmp_path / "verse.txt")), block_size=16, batch_size=4, batches_per_epoch=3)
    samples = TextSamples(prompt="To", length=30, seed=1)
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True)
    trainer = run(tmp_path, tiny_gpt(data.vocab), data, [samples, checkpoints], epochs=3, enable_checkpointing=True)
    table = rows(tmp_path / "pictures" / "samples" / "text.csv")
    assert [(int(r["epoch"]), int(r["step"])) for r in table] == [(0, 3), (1, 6), (2, 9)]
    assert all(r["text"].startswith("To") and len(r["text"]) == 32 for r in table)
    assert float(table[-1]["val/loss"]) == pytest.approx(trainer.callback_metrics["val/loss"].item(), abs=1e-4)
    lines = sum(2 + min(4, len([p for line in r["text"].splitlines() for p in textwrap.wrap(line, 90)])) for r in table)
    assert_picture(tmp_path / "pictures" / "samples" / "text.png", 800, round(100 * (0.16 * lines + 0.3)))

    # Sampling draws from its own generator: the same run without it trains to the same numbers.
    plain = run(tmp_path / "plain", tiny_gpt(data.vocab), data, [], epochs=3)
    assert plain.callback_metrics["val/loss"].item() == trainer.callback_metrics["val/loss"].item()

    # A resumed run continues the table, its rows typed as new ones (a W&B table refuses mixed types).
    continued = TextSamples(prompt="To", length=30, seed=1)
    run(tmp_path, tiny_gpt(data.vocab), data, [continued], epochs=4, ckpt_path=str(tmp_path / "checkpoints" / "last.ckpt"))
    resumed = rows(tmp_path / "pictures" / "samples" / "text.csv")
    assert resumed[:3] == table and int(resumed[3]["epoch"]) == 3
    assert [list(map(type, row)) for row in continued.rows] == [[int, int, float, str]] * 4

    # A table it cannot read (edited, foreign) is replaced, with a warning.
    (tmp_path / "pictures" / "samples" / "text.csv").write_text("epoch,step\n0,x\n")
    with pytest.warns(UserWarning, match=r"text.csv is not a table of text samples"):
        run(tmp_path, tiny_gpt(data.vocab), data, [TextSamples(prompt="To", length=30, seed=1)], epochs=5,
            ckpt_path=str(tmp_path / "checkpoints" / "last.ckpt"))  # fmt: skip
    assert [int(r["epoch"]) for r in rows(tmp_path / "pictures" / "samples" / "text.csv")] == [3, 4]  # from last.ckpt again


COMPILED = {
    "gpt": (lambda data: tiny_gpt(data.vocab), lambda: [AttentionMaps(), TextSamples(length=20)], 3),  # 2 layers, text
    "vit": (lambda data: ViT(input_shape=(1, 8, 8), patch_size=4, num_layers=1, nhead=2, d_model=16), lambda: [ConvFilters(), AttentionMaps()], 2),
}  # fmt: skip


@pytest.mark.parametrize("family", COMPILED)
def test_pictures_of_a_compiled_model_compile_nothing(family, tmp_path):
    # One sample, or text token by token, has shapes training never had: compiled, each a recompilation.
    build, callbacks, pictures = COMPILED[family]
    data = Text(path=str(write_text(tmp_path / "verse.txt")), block_size=16, batch_size=4, batches_per_epoch=3) if family == "gpt" else Digits(batch_size=64)
    graphs = {}
    for name, chosen in (("plain", []), ("pictures", callbacks())):
        torch._dynamo.reset()  # nothing cached from the other run
        compiled = []
        model = build(data)
        model.compile(backend=lambda graph, inputs: compiled.append(graph) or graph.forward)  # traced, run eagerly
        run(tmp_path / name, model, data, chosen, limit_train_batches=2, limit_val_batches=1)
        graphs[name] = len(compiled)
    assert graphs["pictures"] == graphs["plain"] > 0
    assert len(list((tmp_path / "pictures" / "pictures").rglob("*.png"))) == pictures


def test_a_prompt_outside_the_vocabulary_fails_before_training(tmp_path):
    data = Text(path=str(write_text(tmp_path / "verse.txt")), block_size=16, batch_size=4, batches_per_epoch=3)
    model = tiny_gpt(data.vocab)
    with pytest.raises(ValueError, match=r"\['Z'\] are not in the model's vocabulary"):
        run(tmp_path, model, data, [TextSamples(prompt="Zounds")])
    assert model.global_step == 0


def test_knn_neighbours_are_the_nearest_memorised_samples(tmp_path):
    data = Digits(batch_size=64)
    model = KNN(input_shape=(1, 8, 8), k=3)
    run(tmp_path, model, data, [KNNNeighbours(num_queries=4)], test=True)
    folder = tmp_path / "pictures" / "knn"
    table = rows(folder / "neighbours.csv")
    queries = data.normalize(data.splits["test"][0][:4]).flatten(1)
    distances = torch.cdist(queries, model.memory)  # (4, N)
    assert len(table) == 4 * 3
    for row in table:
        q, index = int(row["query"]), int(row["memory_index"])
        nearest = distances[q].sort().values[int(row["neighbour"]) - 1].item()
        assert float(row["distance"]) == pytest.approx(nearest, rel=1e-4) == pytest.approx(distances[q, index].item(), rel=1e-4)
        assert int(row["neighbour_label"]) == model.memory_labels[index] and int(row["label"]) == data.splits["test"][1][q]
    assert_picture(folder / "neighbours.png", 480, 622)  # 4 rows of a query and 3 neighbours, 1.2-inch tiles


def test_a_model_without_what_a_picture_needs_gets_a_warning_and_no_picture(tmp_path):
    callbacks = [ConvFilters(), AttentionMaps(), TextSamples(), KNNNeighbours()]
    with pytest.warns(UserWarning) as warned:
        run(tmp_path, MLP(input_shape=(1, 8, 8), hidden_sizes=[8]), Digits(batch_size=64), callbacks, test=True)
    messages = [str(w.message) for w in warned if "MLP has no" in str(w.message)]
    assert len(messages) == 4 and all(m.count("\n") == 0 for m in messages), messages
    assert not (tmp_path / "pictures").exists()
