"""LightningDataModules, one file per data family; short class paths like ``datamodules.MNIST``."""

from datamodules.base import ImageDataModule
from datamodules.cifar import CIFAR10, CIFAR100
from datamodules.digits import Digits
from datamodules.mnist import KMNIST, MNIST, FashionMNIST
from datamodules.text import Text

__all__ = ["CIFAR10", "CIFAR100", "Digits", "FashionMNIST", "ImageDataModule", "KMNIST", "MNIST", "Text"]
