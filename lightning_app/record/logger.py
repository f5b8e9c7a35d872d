"""Weights & Biases for every run: offline when there is no key or no network, the full config in the run,
and none of W&B's console capture or system-metric sampling unless asked for (``--wandb_capture true``)."""

import functools
import netrc
import os
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import yaml
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn

from lightning_app.compare import config_id
from lightning_app.record.folder import run_dir

WANDB_LOGGER = "lightning.pytorch.loggers.WandbLogger"
LAUNCH_INPUTS = "wandb.sdk.launch.inputs.internal"  # where W&B Launch keeps the job inputs staged for a run
WANDB_MODES = ("online", "offline", "disabled", "dryrun", "run", "shared")  # what wandb.init accepts
CONFIG_NAME = "lightning_config.yaml"  # W&B writes its own config.yaml into the run's files


def _has_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_offline(save_dir: str | None = None, timeout: float = 5.0) -> bool:
    """True unless W&B can log in without asking and its server answers: ``WANDB_MODE`` wins.

    With a key but no answer from the server, ``wandb.init`` retries for about two minutes and then
    fails. So one HTTP request (``timeout`` seconds, any HTTP answer counts) is tried first: a server
    that cannot be reached, or accepts the connection and never answers, sends the run offline at once.
    """
    mode = os.environ.get("WANDB_MODE")
    if mode:
        if mode not in WANDB_MODES:
            raise ValueError(f"WANDB_MODE={mode!r} is not a W&B mode: set it to one of {', '.join(WANDB_MODES)}, or unset it")
        return mode in ("offline", "dryrun", "disabled")
    if not _has_key():
        return True
    url = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    try:
        urllib.request.urlopen(url, timeout=timeout).close()
    except urllib.error.HTTPError:
        return False  # an answer, if not a welcome one: the server is there
    except (OSError, ValueError) as error:  # URLError, a timeout, a refused connection, a URL that is not one
        # The logger gives W&B its save_dir, which wins over WANDB_DIR.
        offline_runs = Path(save_dir or os.environ.get("WANDB_DIR") or ".") / "wandb" / "offline-run-*"
        rank_zero_warn(
            f"W&B: {url} is not reachable or did not answer within {timeout:g} s ({getattr(error, 'reason', error)}); "
            "this run logs offline as with WANDB_MODE=offline (set WANDB_MODE=offline to skip this check); upload it later "
            f"with `wandb sync {offline_runs}`"
        )
        return True
    return False


def wandb_settings(capture: bool) -> dict[str, object]:
    """The W&B run settings: without ``capture``, no console capture and no system-metric sampling.

    W&B copies every console write (each progress-bar redraw) into the run's log, and samples the
    CPU, memory and GPUs every 15 s in a helper process: both compete with training for the CPU
    (docs/speed.md). ``WANDB_CONSOLE`` or ``WANDB_X_DISABLE_STATS`` in the environment keep their
    own value.
    """
    if capture:
        return {}
    settings: dict[str, object] = {}
    if "WANDB_CONSOLE" not in os.environ:
        settings["console"] = "off"
    if not {"WANDB_X_DISABLE_STATS", "WANDB__DISABLE_STATS"} & os.environ.keys():
        settings["x_disable_stats"] = True
    return settings


def skip_unused_launch_inputs() -> None:
    """Spares every W&B run start the import of W&B Launch when no Launch job inputs can be staged.

    ``wandb.init`` imports ``wandb.sdk.launch.inputs.internal`` to apply the job inputs staged by
    ``wandb.launch.manage_config_file`` and ``manage_wandb_config``; those calls import that module
    themselves, so while it is not imported nothing is staged. The import costs 0.4-1 s once torch is
    loaded (pydantic looks up the source of each model class it defines among every loaded module).
    W&B has no setting for it, so this wraps its private hook; ``tests/lightning_app/record/test_logger.py``
    pins what it relies on.
    """
    from wandb.sdk.wandb_run import Run

    apply = Run._detect_and_apply_job_inputs
    if getattr(apply, "skips_unused", False):
        return

    @functools.wraps(apply)
    def apply_staged(run: Run) -> None:
        if LAUNCH_INPUTS in sys.modules:
            apply(run)

    apply_staged.skips_unused = True
    Run._detect_and_apply_job_inputs = apply_staged


def prepare_init(logger: WandbLogger) -> None:
    """Edits what the logger will hand ``wandb.init``: no warning about what nobody set, absolute paths.

    Lightning hands ``wandb.init`` ``anonymous=None`` whatever the config says, and W&B warns that the
    setting has no effect: left out when it is None. W&B looks for a git repository from the save
    folder and warns when that folder does not exist yet (a first run): it is made first. The folder
    is given as an absolute path: a W&B service that several processes share (a sweep's trials,
    launch.py) resolves a relative one against its own working folder. The saved config keeps it as given.
    """
    if "anonymous" in logger._wandb_init and logger._wandb_init["anonymous"] is None:
        del logger._wandb_init["anonymous"]
    if logger.save_dir:
        Path(logger.save_dir).mkdir(parents=True, exist_ok=True)
        logger._wandb_init["dir"] = os.path.abspath(logger.save_dir)


_service: threading.Thread | None = None  # the thread that starts W&B's service, while it runs


def _start(offline: bool) -> None:
    global _service
    if offline:
        # What WandbLogger sets when it starts the run, set before W&B reads its settings here, once.
        os.environ["WANDB_MODE"] = "dryrun"

    def start() -> None:
        try:
            import wandb

            wandb.setup()
        except Exception:  # noqa: BLE001 - wandb.init meets the same problem and says what it is
            pass

    _service = threading.Thread(target=start, name="wandb-service", daemon=True)
    _service.start()


def start_service_early(args: list[str]) -> None:
    """Starts W&B's service before the command line is parsed, where the run logs offline by the
    environment alone (``WANDB_MODE`` offline, or no API key: no request decides it) and the command
    line names no logger: the service's process then starts on another core during the parsing
    rather than after it, when the run would wait for it. A run whose config turns out to log
    elsewhere tears it down at its end, as every run does.
    """
    if rank_zero_only.rank != 0 or not args or args[0] not in LightningCLI.subcommands():
        return
    if any(arg.startswith(("--trainer.logger", "--print_config", "--help", "-h")) for arg in args):
        return
    mode = os.environ.get("WANDB_MODE")
    if mode in ("offline", "dryrun") or (mode is None and not _has_key()):
        _start(offline=True)


def start_service(config) -> None:
    """Starts W&B's service process on a thread, while the model, the data and the trainer are built.

    ``wandb.init`` would start it and wait for it to answer (0.2 s); started here, the wait overlaps
    the work before the run first uses W&B. Only where W&B logs: its logger, rank 0, not disabled;
    not again where ``start_service_early`` started it.
    """
    if _service is not None:
        return
    if getattr(config.trainer.logger, "class_path", None) != WANDB_LOGGER or rank_zero_only.rank != 0:
        return
    if os.environ.get("WANDB_MODE") == "disabled":
        return
    _start(offline=bool(config.trainer.logger.init_args.get("offline")))  # name_wandb_run decided


def wait_for_service() -> None:
    """Waits for ``start_service``'s thread, so that what it started is there to be torn down."""
    global _service
    if _service is not None:
        _service.join()
        _service = None


def wandb_group(logger, experiment: str) -> str:
    """The W&B group of a run: its ``dict_kwargs.group``, else ``init_args.group`` (a sweep's), else the experiment."""
    return (logger.get("dict_kwargs") or {}).get("group") or logger.init_args.get("group") or experiment


def name_wandb_run(config, experiment: str, subcommand: str) -> None:
    """Names the W&B run of ``config`` (the subcommand's, before instantiation): name, group, tags, settings."""
    logger = config.trainer.logger
    if getattr(logger, "class_path", None) != WANDB_LOGGER:
        return
    model = config.model.class_path.rsplit(".", 1)[-1]
    data = config.data.class_path.rsplit(".", 1)[-1]
    init_args = logger.init_args
    init_args.name = init_args.name or f"{experiment}-{subcommand}"
    init_args.offline = init_args.offline or wandb_offline(init_args.save_dir)
    group = wandb_group(logger, experiment)  # the group `--ckpt_path last` looks in
    given = logger.get("dict_kwargs", {})
    settings = {**wandb_settings(config.wandb_capture), **given.get("settings", {})}
    logger.dict_kwargs = {"group": group, "tags": [model, data, subcommand], **given, "settings": settings}


class SaveRunConfig(SaveConfigCallback):
    """Saves the resolved config in the run's own folder and makes it the W&B run's config.

    ``<run folder>/config.yaml`` sits beside ``checkpoints/`` and reproduces the run with
    ``--config``. With W&B it is also ``lightning_config.yaml`` in the W&B run's files, and the
    config's values become the run's config, so runs can be filtered and compared on them, with its
    ``config_id`` (``lightning_app/compare/groups.py``): "Group by config_id" in W&B shows the groups of
    repeats that ``python -m lightning_app.compare`` shows.
    """

    def save_config(self, trainer, pl_module, stage: str) -> None:
        text = self.parser.dump(self.config, skip_none=False, skip_validation=True)  # checked when parsed; 0.15 s
        folder = run_dir(trainer)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.yaml").write_text(text)
        if isinstance(trainer.logger, WandbLogger):
            run = trainer.logger.experiment
            (Path(run.dir) / CONFIG_NAME).write_text(text)
            resolved = yaml.safe_load(text)
            run.config.update({**resolved, "config_id": config_id(resolved)}, allow_val_change=True)
