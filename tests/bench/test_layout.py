"""bench/layout.py counts the import edges it is meant to: absolute and relative, each pair once."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
from layout import import_edges  # noqa: E402


def test_import_edges_resolve_relative_imports_and_count_each_pair_once(tmp_path):
    package = tmp_path / "lightning_app"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("import lightning_app.b\nfrom lightning_app import b\nimport torch\n")
    (package / "b.py").write_text("from .sub import c\n")
    (package / "sub" / "__init__.py").write_text("from . import c\nfrom ..a import x\n")
    (package / "sub" / "c.py").write_text("from lightning_app.sub import c\n")  # itself: not an edge
    assert import_edges(tmp_path) == {
        ("lightning_app.a", "lightning_app.b"),
        ("lightning_app.a", "lightning_app"),
        ("lightning_app.b", "lightning_app.sub"),
        ("lightning_app.sub", "lightning_app.a"),  # `from . import c` in sub/__init__ names the package itself
        ("lightning_app.sub.c", "lightning_app.sub"),
    }
