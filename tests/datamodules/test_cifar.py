"""CIFAR-10/100: tiny archives in the real binary format; download, safe extraction, strict parsing."""

import functools
import http.server
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules import CIFAR10, CIFAR100
from datamodules.download import md5sum
from lightning_app.cli import AppCLI
from tests.fakes import accept_archive, cifar_bytes, write_cifar10_archive, write_cifar100_archive, write_tar_gz

RECORD = 1 + 3 * 32 * 32


def test_cifar10_extracts_and_parses_records(tmp_path, monkeypatch):
    accept_archive(monkeypatch, write_cifar10_archive(tmp_path, n_per_file=20), CIFAR10)
    data = CIFAR10(data_dir=str(tmp_path), val_split=0.2)
    data.prepare_data()
    assert not (tmp_path / "cifar-10-batches-bin" / "batches.meta.txt").exists()  # only the expected files
    data.setup("fit")
    data.setup("test")
    assert data.splits["train"][0].shape == (80, 3, 32, 32) and len(data.splits["val"][0]) == 20
    images, labels = data.splits["test"]
    expected = np.frombuffer(cifar_bytes(20, seed=5), np.uint8).reshape(20, RECORD)
    assert images.dtype == torch.uint8 and labels.dtype == torch.int64
    assert torch.equal(labels, torch.from_numpy(expected[:, 0].astype(np.int64)))
    assert torch.equal(images[3, 2].flatten(), torch.from_numpy(expected[3, 1 + 2048 :].copy()))  # blue plane


def test_cifar100_reads_fine_or_coarse_labels(tmp_path, monkeypatch):
    accept_archive(monkeypatch, write_cifar100_archive(tmp_path, n_train=50, n_test=30), CIFAR100)
    records = np.frombuffer(cifar_bytes(30, 2, (20, 100), seed=1), np.uint8).reshape(30, RECORD + 1)
    fine, coarse = CIFAR100(data_dir=str(tmp_path)), CIFAR100(data_dir=str(tmp_path), labels="coarse")
    fine.prepare_data()
    assert (fine.num_classes, coarse.num_classes) == (100, 20)
    assert torch.equal(fine.load_split("test")[1], torch.from_numpy(records[:, 1].astype(np.int64)))
    assert torch.equal(coarse.load_split("test")[1], torch.from_numpy(records[:, 0].astype(np.int64)))
    assert fine.load_split("train")[0].shape == (50, 3, 32, 32)


def test_archive_copied_by_hand_with_the_wrong_checksum_is_refused(tmp_path):
    archive = write_cifar10_archive(tmp_path)
    with pytest.raises(ValueError, match=rf"MD5 {md5sum(archive)}, expected {CIFAR10.md5}.*delete it"):
        CIFAR10(data_dir=str(tmp_path)).prepare_data()
    assert not (tmp_path / "cifar-10-batches-bin").exists()


def test_truncated_or_corrupt_archive_is_a_clear_error(tmp_path, monkeypatch):
    archive = write_cifar10_archive(tmp_path)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    accept_archive(monkeypatch, archive, CIFAR10)  # past the checksum, as if the official file were cut short
    with pytest.raises(ValueError, match="not a readable tar.gz.*delete it"):
        CIFAR10(data_dir=str(tmp_path)).prepare_data()
    archive.write_bytes(b"<html>not found</html>")
    accept_archive(monkeypatch, archive, CIFAR10)
    with pytest.raises(ValueError, match="not a readable tar.gz"):
        CIFAR10(data_dir=str(tmp_path)).prepare_data()


def test_archive_without_the_expected_files_is_refused(tmp_path, monkeypatch):
    archive = write_tar_gz(tmp_path / "cifar-10-binary.tar.gz", {"cifar-10-batches-bin/test_batch.bin": cifar_bytes(3)})
    accept_archive(monkeypatch, archive, CIFAR10)
    with pytest.raises(ValueError, match="lacks cifar-10-batches-bin/data_batch_1.bin"):
        CIFAR10(data_dir=str(tmp_path)).prepare_data()


@pytest.mark.parametrize("name", ["../escaped.bin", "cifar-10-batches-bin/../../escaped.bin", "/tmp/escaped.bin"])
def test_member_outside_data_dir_is_refused(tmp_path, monkeypatch, name):
    data_dir = tmp_path / "data"
    accept_archive(monkeypatch, write_tar_gz(data_dir / "cifar-10-binary.tar.gz", {name: b"x"}), CIFAR10)
    with pytest.raises(ValueError, match="would extract outside"):
        CIFAR10(data_dir=str(data_dir)).prepare_data()
    assert not (tmp_path / "escaped.bin").exists()


def test_link_member_is_refused(tmp_path, monkeypatch):
    with tarfile.open(tmp_path / "cifar-10-binary.tar.gz", "w:gz") as tar:
        link = tarfile.TarInfo("cifar-10-batches-bin/data_batch_1.bin")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    accept_archive(monkeypatch, tmp_path / "cifar-10-binary.tar.gz", CIFAR10)
    with pytest.raises(ValueError, match="not a regular file"):
        CIFAR10(data_dir=str(tmp_path)).prepare_data()
    assert not (tmp_path / "cifar-10-batches-bin" / "data_batch_1.bin").exists()


def write_extracted(tmp_path, test_batch: bytes):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for i in range(1, 6):
        (folder / f"data_batch_{i}.bin").write_bytes(cifar_bytes(4))
    (folder / "test_batch.bin").write_bytes(test_batch)
    return CIFAR10(data_dir=str(tmp_path))


def test_record_file_of_the_wrong_size_is_a_clear_error(tmp_path):
    data = write_extracted(tmp_path, cifar_bytes(3)[:-100])
    message = rf"test_batch.bin: {3 * RECORD - 100} bytes is not a whole number of {RECORD}-byte records"
    with pytest.raises(ValueError, match=message):
        data.load_split("test")


def test_label_out_of_range_is_a_clear_error(tmp_path):
    records = bytearray(cifar_bytes(3))
    records[RECORD] = 10  # the second record's label
    with pytest.raises(ValueError, match=r"test_batch.bin: label 10 .* out of range 0..9"):
        write_extracted(tmp_path, bytes(records)).load_split("test")


def test_missing_files_without_network_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(CIFAR10, "mirrors", ["http://127.0.0.1:9/"])  # the discard port: connection refused
    data = CIFAR10(data_dir=str(tmp_path))
    with pytest.raises(RuntimeError, match="copy cifar-10-binary.tar.gz into"):
        data.prepare_data()
    with pytest.raises(FileNotFoundError, match="data_batch_1.bin is missing.*copy cifar-10-binary.tar.gz"):
        data.setup("fit")


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/served."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def test_download_checks_the_checksum_then_extracts(tmp_path, server, monkeypatch):
    served, url = server
    archive = write_cifar10_archive(served, n_per_file=5)
    monkeypatch.setattr(CIFAR10, "mirrors", [url])
    data_dir = tmp_path / "data"
    with pytest.raises(RuntimeError, match="checksum mismatch"):  # the fake is not the official archive
        CIFAR10(data_dir=str(data_dir)).prepare_data()
    assert not (data_dir / "cifar-10-binary.tar.gz").exists()
    accept_archive(monkeypatch, archive, CIFAR10)
    data = CIFAR10(data_dir=str(data_dir), val_split=0.2)
    data.prepare_data()
    data.setup("fit")
    assert len(data.splits["train"][0]) == 20


@pytest.mark.parametrize(("labels", "num_classes"), [("fine", 100), ("coarse", 20)])
def test_cifar100_class_count_reaches_the_model(labels, num_classes, in_tmp):
    config = Path(__file__).parents[2] / "configs" / "cifar100_resnet.yaml"
    cli = AppCLI(args=["--config", str(config), "--trainer.logger", "false", "--data.labels", labels], run=False)
    assert cli.model.classifier.out.out_features == num_classes


def test_a_refused_archive_leaves_no_file_behind(tmp_path, monkeypatch):
    # Every record file is good, and then a member points outside: the archive is refused as a whole.
    archive = write_cifar10_archive(tmp_path)
    with tarfile.open(archive, "r:gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar}
    accept_archive(monkeypatch, write_tar_gz(archive, {**members, "../escaped.bin": b"x"}), CIFAR10)
    data = CIFAR10(data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="would extract outside"):
        data.prepare_data()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-10-binary.tar.gz"]  # no record file, no staging
    with pytest.raises(FileNotFoundError, match="data_batch_1.bin is missing"):  # the next run does not train on them
        data.setup("fit")


def test_data_dir_that_is_a_file_is_named(tmp_path):
    (tmp_path / "cifar10").write_bytes(b"")
    with pytest.raises(NotADirectoryError, match="cifar10 is a file: give a folder"):
        CIFAR10(data_dir=str(tmp_path / "cifar10"))
