import pytest
import yaml

from tests.lightning_app.sweep.standin import TRIAL


@pytest.fixture
def write_sweep(in_tmp):
    """Writes a sweep file that runs the stand-in trial; returns its path."""
    (in_tmp / "trial.py").write_text(TRIAL)

    def write(method="grid", name="sweep", **parameters):
        spec = {
            "method": method,
            "metric": {"name": "score", "goal": "maximize"},
            "parameters": parameters or {"x": {"values": [1, 2]}, "y": {"values": [[0], [1, 2]]}},
            "command": ["${interpreter}", "trial.py", "${args}"],
        }
        path = in_tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump(spec))
        return str(path)

    return write
