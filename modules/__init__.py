"""LightningModules, one file per architecture family; short class paths like ``modules.MLP``."""

from modules.classifier import Classifier
from modules.cnn import CNN
from modules.knn import KNN
from modules.language_model import LanguageModel
from modules.linear import LinearSoftmax
from modules.mlp import MLP
from modules.rnn import RNN
from modules.transformer import Transformer
from modules.vit import ViT

__all__ = ["CNN", "Classifier", "KNN", "LanguageModel", "LinearSoftmax", "MLP", "RNN", "Transformer", "ViT"]
