"""Modules that ``import lightning`` loads and a run never uses, loaded on first use instead.

torchmetrics, imported by Lightning, runs ``import scipy.signal`` only to add ``hamming`` to it when
missing (a patch for an audio library). That import loads 520 scipy modules (``scipy.stats`` among
them): 0.6-0.7 s of the 2.8 s that ``import lightning`` takes (``python -X importtime``), in every
run, sweep trial server and text generation, none of which calls scipy.signal.

``defer_unused_imports()``, called by the commands before they import Lightning, puts a stand-in
module in its place. The stand-in carries the real module's file, spec and path, so that ``inspect``
(which torch calls while it registers its operators) and imports of its submodules find what they
look for without loading it; ``hamming`` answers without loading it too. Any other name read from it
imports the real module, puts it in the stand-in's place (``sys.modules`` and its package), adds the
same ``hamming`` as torchmetrics would, and returns that name: code that does use scipy.signal gets
it whole, at the cost it had before.
"""

import importlib
import importlib.util
import sys
import threading
import types

_loading = threading.RLock()


class Deferred(types.ModuleType):
    """A stand-in for the module ``name``: the real one is imported when a name is read from it."""

    def __init__(self, name: str, spec, answers: dict[str, object], after_load=lambda module: None) -> None:
        super().__init__(name)
        self.__spec__, self.__loader__, self.__file__ = spec, spec.loader, spec.origin
        self.__package__ = name
        if spec.submodule_search_locations is not None:
            self.__path__ = spec.submodule_search_locations
        self.__dict__["_answers"], self.__dict__["_after_load"] = answers, after_load

    def __getattr__(self, name: str):
        if name in self._answers:
            return self._answers[name]
        return getattr(load(self.__name__), name)


def load(name: str) -> types.ModuleType:
    """The real module ``name``, imported now if a stand-in holds its place."""
    with _loading:
        module = sys.modules.get(name)
        if not isinstance(module, Deferred):
            return module if module is not None else importlib.import_module(name)
        package, _, child = name.rpartition(".")
        del sys.modules[name]
        if package:
            vars(sys.modules[package]).pop(child, None)
        real = importlib.import_module(name)  # binds itself in its package, as any import does
        module._after_load(real)
        return real


def defer(name: str, answers: dict[str, object] | None = None, after_load=lambda module: None) -> bool:
    """Puts a stand-in for the module ``name`` in ``sys.modules`` (its package is imported now), unless
    it is loaded already or cannot be found; ``answers``: names the stand-in gives without loading.
    ``after_load(module)`` runs on the real module once it loads. Returns whether it did."""
    if name in sys.modules:
        return False
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    stand_in = Deferred(name, spec, answers or {}, after_load)
    sys.modules[name] = stand_in
    package, _, child = name.rpartition(".")
    if package:
        setattr(sys.modules[package], child, stand_in)
    return True


def _hamming(*args, **kwargs):
    """``scipy.signal.hamming`` as torchmetrics adds it: ``scipy.signal.windows.hamming``."""
    return load("scipy.signal").windows.hamming(*args, **kwargs)


def _add_hamming(signal: types.ModuleType) -> None:
    if not hasattr(signal, "hamming"):
        signal.hamming = signal.windows.hamming


def defer_unused_imports() -> None:
    """Defers ``scipy.signal`` (see the module's docstring); call it before importing Lightning."""
    defer("scipy.signal", {"hamming": _hamming}, _add_hamming)
