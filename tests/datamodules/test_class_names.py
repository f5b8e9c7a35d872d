"""Class names: the digits for the digit data sets, CIFAR's names file (extracted or in the archive) read at setup."""

import io
import tarfile

import pytest

from datamodules import CIFAR10, CIFAR100, MNIST, Digits
from lightning_app.pictures.base import class_names
from tests.fakes import accept_archive, cifar_bytes, write_tar_gz

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
INDICES = [str(i) for i in range(10)]


def names_archive(data_dir, member: str, names: list[str]):
    return write_tar_gz(data_dir / CIFAR10.archive, {member: ("\n".join(names) + "\n\n").encode()})


def test_digits_are_their_indices():
    assert Digits().class_names == MNIST().class_names == INDICES
    assert class_names(Digits(), 10) == INDICES


def test_cifar10_names_come_from_the_archive_at_setup_without_extracting_them(tmp_path, monkeypatch):
    files = [name for names in CIFAR10.split_files.values() for name in names]
    records = {f"cifar-10-batches-bin/{name}": cifar_bytes(4, seed=i) for i, name in enumerate(files)}
    names = {"cifar-10-batches-bin/batches.meta.txt": ("\n".join(CIFAR10_NAMES) + "\n\n").encode()}
    accept_archive(monkeypatch, write_tar_gz(tmp_path / CIFAR10.archive, {**records, **names}), CIFAR10)
    data = CIFAR10(data_dir=str(tmp_path))
    data.prepare_data()
    assert data.class_names is None  # read at setup, not at construction
    data.setup("test")
    assert data.class_names == CIFAR10_NAMES and class_names(data, 10) == CIFAR10_NAMES
    assert not (tmp_path / "cifar-10-batches-bin" / "batches.meta.txt").exists()


def test_an_extracted_names_file_is_read_first(tmp_path):
    names_archive(tmp_path, "cifar-10-batches-bin/batches.meta.txt", CIFAR10_NAMES)
    (tmp_path / "cifar-10-batches-bin").mkdir()
    (tmp_path / "cifar-10-batches-bin" / "batches.meta.txt").write_text("\n".join(n.upper() for n in CIFAR10_NAMES))
    assert CIFAR10(data_dir=str(tmp_path)).read_class_names()[0] == "AIRPLANE"


def test_cifar100_fine_and_coarse_names(tmp_path):
    fine, coarse = [f"fine{i}" for i in range(100)], [f"coarse{i}" for i in range(20)]
    write_tar_gz(tmp_path / CIFAR100.archive, {
        "cifar-100-binary/fine_label_names.txt": "\n".join(fine).encode(),
        "cifar-100-binary/coarse_label_names.txt": "\n".join(coarse).encode(),
    })  # fmt: skip
    assert CIFAR100(data_dir=str(tmp_path)).read_class_names() == fine
    assert CIFAR100(data_dir=str(tmp_path), labels="coarse").read_class_names() == coarse


def test_a_wrong_count_is_none_and_the_pictures_show_indices(tmp_path):
    names_archive(tmp_path, "cifar-10-batches-bin/batches.meta.txt", CIFAR10_NAMES[:2])  # the fakes' two-name file
    data = CIFAR10(data_dir=str(tmp_path))
    assert data.read_class_names() is None and class_names(data, 10) == INDICES
    digits = Digits()
    digits.class_names = [f"digit {i}" for i in range(10)]
    assert class_names(digits, 10)[3] == "digit 3" and class_names(digits, 11) == [str(i) for i in range(11)]


def test_crafted_and_corrupt_archives_give_none(tmp_path):
    link = tarfile.TarInfo("cifar-10-batches-bin/batches.meta.txt")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with tarfile.open(tmp_path / CIFAR10.archive, "w:gz") as tar:
        tar.addfile(link)
    assert CIFAR10(data_dir=str(tmp_path)).read_class_names() is None
    huge = tmp_path / "huge"
    with tarfile.open(write_tar_gz(huge / CIFAR10.archive, {}), "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-bin/batches.meta.txt")
        info.size = 1 << 20  # far longer than a names file
        tar.addfile(info, io.BytesIO(b"x\n" * (1 << 19)))
    assert CIFAR10(data_dir=str(huge)).read_class_names() is None
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / CIFAR10.archive).write_bytes(b"not a gzip file")
    data = CIFAR10(data_dir=str(broken))
    with pytest.warns(UserWarning, match="class names not readable"):
        assert data.read_class_names() is None
    assert class_names(data, 10) == INDICES
