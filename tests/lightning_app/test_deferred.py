import inspect
import sys
import types
from concurrent.futures import ThreadPoolExecutor

import pytest

from lightning_app.deferred import Deferred, _add_hamming, _hamming, defer, load


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A package ``deferpkg`` whose submodule ``sub`` counts its loads in ``deferpkg.loads``."""
    root = tmp_path / "deferpkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("loads = 0\n")
    (root / "sub" / "__init__.py").write_text("import deferpkg\ndeferpkg.loads += 1\nvalue = 42\n")
    (root / "sub" / "part.py").write_text("x = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in [name for name in sys.modules if name.split(".")[0] == "deferpkg"]:
        del sys.modules[name]


def test_a_deferred_module_loads_when_a_name_is_first_read_from_it(package):
    import deferpkg

    loaded = []
    assert defer("deferpkg.sub", {"answer": 7}, loaded.append)
    stand_in = sys.modules["deferpkg.sub"]
    assert isinstance(stand_in, Deferred) and deferpkg.sub is stand_in and deferpkg.loads == 0
    # What inspect and the import system read (torch calls inspect.getmodule over every module) loads nothing.
    assert stand_in.answer == 7 and stand_in.__file__.endswith("__init__.py")
    assert inspect.getmodule(test_a_deferred_module_loads_when_a_name_is_first_read_from_it) is sys.modules[__name__]
    import deferpkg.sub.part

    assert deferpkg.sub.part.x == 1 and deferpkg.loads == 0

    assert stand_in.value == 42  # the first name it does not hold: the real module loads, once
    real = sys.modules["deferpkg.sub"]
    assert deferpkg.loads == 1 and not isinstance(real, Deferred) and deferpkg.sub is real and loaded == [real]
    from deferpkg.sub import value

    assert value == 42 and stand_in.value == 42 and load("deferpkg.sub") is real and deferpkg.loads == 1


def test_a_name_the_module_lacks_is_an_attribute_error_once_it_has_loaded(package):
    defer("deferpkg.sub")
    with pytest.raises(AttributeError, match="missing"):
        sys.modules["deferpkg.sub"].missing
    assert sys.modules["deferpkg"].loads == 1 and hasattr(sys.modules["deferpkg.sub"], "value")


def test_defer_leaves_loaded_and_missing_modules_alone(package):
    import json

    assert not defer("json") and sys.modules["json"] is json
    assert not defer("deferpkg.nothing") and "deferpkg.nothing" not in sys.modules
    assert not defer("no_such_package_here.sub") and "no_such_package_here" not in sys.modules


def test_the_scipy_signal_stand_in_answers_hamming_as_torchmetrics_adds_it():
    from scipy.signal import windows

    assert _hamming(5).tolist() == windows.hamming(5).tolist()
    signal = types.SimpleNamespace(windows=windows)
    _add_hamming(signal)
    assert signal.hamming is windows.hamming


def test_threads_that_read_from_the_stand_in_at_once_load_the_module_once(package):
    import deferpkg

    defer("deferpkg.sub")
    stand_in = sys.modules["deferpkg.sub"]
    with ThreadPoolExecutor(8) as pool:
        values = list(pool.map(lambda _: stand_in.value, range(32)))
    assert values == [42] * 32 and deferpkg.loads == 1
