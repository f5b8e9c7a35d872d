"""The shape of the code: files and lines per package, and the import edges between the modules of
``lightning_app/`` (how many of its modules import another of its modules).

    python bench/layout.py [ROOT]        # a checkout, this one by default
"""

import ast
import sys
from pathlib import Path

PACKAGES = ("lightning_app", "modules", "datamodules", "tests", "bench")


def module_name(path: Path, root: Path) -> str:
    return ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")


def imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """The modules an import statement names, relative imports resolved against ``module``."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if not node.level:
        return [node.module or ""]
    parts = module.split(".")[: len(module.split(".")) - node.level + is_package]
    return [".".join(parts + ([node.module] if node.module else []))]


def import_edges(root: Path, package: str = "lightning_app") -> set[tuple[str, str]]:
    edges = set()
    for path in (root / package).rglob("*.py"):
        module = module_name(path, root)
        for node in ast.walk(ast.parse(path.read_text())):
            for name in imported(node, module, path.name == "__init__.py"):
                if name.startswith(package) and name != module:
                    edges.add((module, name))
    return edges


def main(root: Path) -> None:
    for package in PACKAGES:
        files = list((root / package).rglob("*.py"))
        print(f"{package}: {len(files)} files, {sum(len(f.read_text().splitlines()) for f in files)} lines")
    print(f"import edges inside lightning_app/: {len(import_edges(root))}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1])
