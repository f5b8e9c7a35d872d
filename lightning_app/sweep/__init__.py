"""``python -m lightning_app.sweep SWEEP.yaml``: a W&B sweep file run with Optuna, no W&B server needed.

driver.py is the command, file.py the sweep file, checks.py what is checked before the first trial,
study.py the study's bookkeeping, trials.py a trial's ``fit`` runs, launch.py how their processes
start, handoff.py how a CPU worker's next trial starts while the last one tests, callback.py the
trial's side, report.py what a sweep leaves behind.
docs/sweeps.md is the user's guide.
"""
