"""LightningModules, one file per architecture family; short class paths like ``modules.MLP``."""

from modules.classifier import Classifier
from modules.cnn import CNN
from modules.knn import KNN
from modules.linear import LinearSoftmax
from modules.mlp import MLP

__all__ = ["CNN", "Classifier", "KNN", "LinearSoftmax", "MLP"]
