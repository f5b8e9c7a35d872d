"""Class names in pictures: the data module's own, CIFAR's names file (extracted or in the archive), else indices."""

import io
import tarfile

import pytest

from datamodules import CIFAR10, CIFAR100, Digits
from lightning_app.pictures.names import class_names
from tests.fakes import write_tar_gz

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def names_archive(data_dir, member: str, names: list[str]):
    return write_tar_gz(data_dir / CIFAR10.archive, {member: ("\n".join(names) + "\n\n").encode()})


def test_digits_are_their_indices():
    assert class_names(Digits(), 10) == [str(i) for i in range(10)]


def test_cifar10_names_come_from_the_archive_without_extracting_it(tmp_path):
    names_archive(tmp_path, "cifar-10-batches-bin/batches.meta.txt", CIFAR10_NAMES)
    assert class_names(CIFAR10(data_dir=str(tmp_path)), 10) == CIFAR10_NAMES
    assert not (tmp_path / "cifar-10-batches-bin").exists()


def test_an_extracted_names_file_is_read_first(tmp_path):
    names_archive(tmp_path, "cifar-10-batches-bin/batches.meta.txt", CIFAR10_NAMES)
    (tmp_path / "cifar-10-batches-bin").mkdir()
    (tmp_path / "cifar-10-batches-bin" / "batches.meta.txt").write_text("\n".join(n.upper() for n in CIFAR10_NAMES))
    assert class_names(CIFAR10(data_dir=str(tmp_path)), 10)[0] == "AIRPLANE"


def test_cifar100_fine_and_coarse_names(tmp_path):
    fine, coarse = [f"fine{i}" for i in range(100)], [f"coarse{i}" for i in range(20)]
    write_tar_gz(tmp_path / CIFAR100.archive, {
        "cifar-100-binary/fine_label_names.txt": "\n".join(fine).encode(),
        "cifar-100-binary/coarse_label_names.txt": "\n".join(coarse).encode(),
    })  # fmt: skip
    assert class_names(CIFAR100(data_dir=str(tmp_path)), 100) == fine
    assert class_names(CIFAR100(data_dir=str(tmp_path), labels="coarse"), 20) == coarse


def test_a_names_attribute_wins_and_a_wrong_count_falls_back_to_indices(tmp_path):
    data = Digits()
    data.class_names = [f"digit {i}" for i in range(10)]
    assert class_names(data, 10)[3] == "digit 3"
    names_archive(tmp_path, "cifar-10-batches-bin/batches.meta.txt", CIFAR10_NAMES[:2])  # the fakes' two-name file
    assert class_names(CIFAR10(data_dir=str(tmp_path)), 10) == [str(i) for i in range(10)]


def test_crafted_and_corrupt_archives_give_indices(tmp_path):
    link = tarfile.TarInfo("cifar-10-batches-bin/batches.meta.txt")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with tarfile.open(tmp_path / CIFAR10.archive, "w:gz") as tar:
        tar.addfile(link)
    assert class_names(CIFAR10(data_dir=str(tmp_path)), 10) == [str(i) for i in range(10)]
    huge = tmp_path / "huge"
    with tarfile.open(write_tar_gz(huge / CIFAR10.archive, {}), "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-bin/batches.meta.txt")
        info.size = 1 << 20  # far longer than a names file
        tar.addfile(info, io.BytesIO(b"x\n" * (1 << 19)))
    assert class_names(CIFAR10(data_dir=str(huge)), 10) == [str(i) for i in range(10)]
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / CIFAR10.archive).write_bytes(b"not a gzip file")
    with pytest.warns(UserWarning, match="class names not readable"):
        assert class_names(CIFAR10(data_dir=str(broken)), 10) == [str(i) for i in range(10)]
