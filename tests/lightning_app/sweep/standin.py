"""The stand-in trial program the sweep tests run, and a look at a study they leave.

The stand-in takes a trial's command line and writes what a `fit` run writes (config.yaml and
summary.json in runs/lightning_app/<run id>) in a blink, so these tests exercise the sweep itself.
"""

import optuna

TRIAL = '''"""Stands in for `python -m lightning_app fit`: the run folder a trial writes, from its --key=value args."""
import json, os, sys, time
from pathlib import Path
import yaml

from lightning_app.sweep.handoff import say_trained, take_turn

started = time.time()
spec = json.loads(os.environ.get("LIGHTNING_APP_SWEEP", "{}"))
config = {}
for arg in sys.argv[1:]:
    key, _, text = arg[2:].partition("=")
    *parents, leaf = key.rstrip("+").split(".")
    node = config
    for parent in parents:
        node = node.setdefault(parent, {})
    value = yaml.safe_load(text)
    node[leaf] = node.get(leaf, []) + [{"class_path": value}] if key.endswith("+") else value
run = Path("runs/lightning_app") / config["trainer"]["logger"]["init_args"]["id"]
run.mkdir(parents=True)
(run / "config.yaml").write_text(yaml.safe_dump(config))
host = os.environ.get("LIGHTNING_APP_SWEEP_HOST", "")
while Path("hold").exists() or Path(f"hold-{host}").exists():  # the test holds the trial running
    time.sleep(0.05)
turn = take_turn(spec.get("gate"))  # as the SweepTrial callback does before the training
trained = time.time()
if config["x"] == config.get("fail_at"):
    sys.exit("this trial fails")
score = -(config["x"] - 2) ** 2 - sum(config.get("y", [0])) + config.get("seed_everything", 0) / 10
(run / "summary.json").write_text(json.dumps({"status": "finished", "last": {"score": score}}))
say_trained(spec.get("trained"), run.resolve())  # as the callback does at the end of fit
time.sleep(config.get("tail", 0))  # the test after fit and the pictures
tested = {"status": "finished", "last": {"score": score}, "test": {"test/score": score}}
(run / "summary.json").write_text(json.dumps(tested))
times = {"started": started, "trained": trained, "exited": time.time(), "gate": spec.get("gate")}
(run / "times.json").write_text(json.dumps(times))
if config["x"] == config.get("tail_fail_at"):
    sys.exit("this trial's test fails")
'''


def trials(name="sweep", states=None):
    study = optuna.load_study(study_name=name, storage=f"sqlite:///runs/sweeps/{name}/study.db")
    return study.get_trials(states=states)
