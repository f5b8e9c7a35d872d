"""LightningDataModules, one file per data family; short class paths like ``datamodules.MNIST``."""

from datamodules.base import ImageDataModule
from datamodules.digits import Digits
from datamodules.mnist import KMNIST, MNIST, FashionMNIST
from datamodules.text import Text

__all__ = ["Digits", "FashionMNIST", "ImageDataModule", "KMNIST", "MNIST", "Text"]
