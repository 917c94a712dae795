"""The shape every model family has, and the one loop that trains any of them.

A family turns a nested config dict (the researcher's training YAML, as loaded) into a
LightningModule and a LightningDataModule. The Lightning Trainer owns the loop; callbacks own the
side effects. Trainers know nothing of Ray or Optuna: whoever calls :func:`fit` passes a
``report`` function, called once per validation epoch with every logged metric and a folder
holding a checkpoint of that epoch.

Example::

    from trainers.base import fit
    from trainers.segmentation import SurfaceSegmentation

    metrics = fit(SurfaceSegmentation(), {"learning_rate": 1e-3}, max_epochs=2)
"""

from __future__ import annotations

import abc
import copy
import logging
import math
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import pytorch_lightning as pl
import torch

Report = Callable[[dict[str, float], str | None], None]
"""``report(metrics, checkpoint_dir)``: metrics of one validation epoch and a folder with its checkpoint (None on an epoch that saved none)."""

CHECKPOINT_FILE = "last.ckpt"
CHECKPOINT_ROOT_PREFIX = "tune_ckpt_"  # then the training process's id: a folder whose process is gone is an orphan
BEST_CHECKPOINT_FILE = "best.ckpt"  # the best epoch's weights, in every checkpoint folder beside the last epoch's checkpoint


class TrainerFamily(abc.ABC):
    """One model family: a model and its data from one config, like a scikit-learn estimator.

    :func:`fit` calls :meth:`resolve` once on the config it is given, then hands that resolved dict
    to every hook: :meth:`build_model`, :meth:`build_data`, :meth:`callbacks` and
    :meth:`trainer_options`. Hooks, and the Lightning modules they build, read the resolved dict as
    it is; they never resolve again.

    A subclass must define:

    - :attr:`DEFAULTS`: every config key with its default, nested like the config. A config names
      only what it changes; :meth:`resolve` rejects keys that are not here. Left ``None`` (the tiny
      families of tests and benchmarks), configs are taken as given, unchecked.
    - :meth:`build_model` and :meth:`build_data`.

    and may override:

    - :meth:`check`: family-specific checks of a resolved config (choices outside a known set).
    - :meth:`callbacks` and :meth:`trainer_options`, which add nothing by default.
    """

    DEFAULTS: Mapping[str, Any] | None = None

    def resolve(self, config: Mapping[str, Any]) -> dict:
        """``config`` laid over :attr:`DEFAULTS` (see :func:`resolve_config`), then :meth:`check`-ed.

        Unknown keys raise ``ValueError``, a value in place of a section ``TypeError``.
        """
        if self.DEFAULTS is None:
            return dict(config)
        resolved = resolve_config(config, self.DEFAULTS)
        self.check(resolved)
        return resolved

    def check(self, config: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` if the resolved ``config`` holds a value this family cannot train with."""

    @abc.abstractmethod
    def build_model(self, config: Mapping[str, Any]) -> pl.LightningModule:
        """The LightningModule for this resolved config; it logs ``val_loss`` and its metrics each validation epoch."""

    @abc.abstractmethod
    def build_data(self, config: Mapping[str, Any]) -> pl.LightningDataModule:
        """The LightningDataModule for this resolved config (synthetic by default, real data when the config names it)."""

    def callbacks(self, config: Mapping[str, Any]) -> list[pl.Callback]:
        """Extra Lightning callbacks the resolved config asks for (SWA, weight noise, ...)."""
        return []

    def trainer_options(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Extra ``pl.Trainer`` arguments from the resolved config (gradient clipping, accumulation, ...)."""
        return {}


def resolve_config(config: Mapping[str, Any], defaults: Mapping[str, Any], where: str = "") -> dict:
    """``config`` laid over ``defaults``, nested dicts merged key by key; unknown keys raise ``ValueError``,
    a value in place of a section ``TypeError``."""
    resolved = copy.deepcopy(dict(defaults))
    for key, value in config.items():
        if key not in defaults:
            raise ValueError(f"unknown config key {where}{key}; known keys: {', '.join(defaults)}")
        if isinstance(defaults[key], Mapping):
            if not isinstance(value, Mapping):
                raise TypeError(f"config key {where}{key} must be a mapping of {', '.join(defaults[key])}")
            resolved[key] = resolve_config(value, defaults[key], where=f"{where}{key}.")
        else:
            resolved[key] = value
    return resolved


def finite_floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Scalar metrics as plain floats (tensors included); non-scalars are left out."""
    out = {}
    for name, value in metrics.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                continue
            value = value.item()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out


class KeepBestEpoch(pl.callbacks.ModelCheckpoint):
    """Lightning's ModelCheckpoint of the best epoch's weights by ``monitor``, in one file: :attr:`best_file`.

    A fit continued in another process keeps its best in a folder of its own: the best score and file stored in the
    checkpoint it continues from are taken as this folder's (Lightning's own would drop the score, and the next
    epoch would then replace the best whatever its value).
    """

    def __init__(self, dirpath: str, monitor: str, mode: str):
        name = BEST_CHECKPOINT_FILE.removesuffix(self.FILE_EXTENSION)
        super().__init__(
            dirpath, name, monitor, mode=mode, save_top_k=1, save_weights_only=True, enable_version_counter=False, verbose=False,
            save_on_train_epoch_end=False,  # at validation end: before ReportEachEpoch copies the best at the training epoch's end
        )  # fmt: skip

    @property
    def best_file(self) -> str:
        return os.path.join(self.dirpath, BEST_CHECKPOINT_FILE)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        def here(path: str) -> str:
            return self.best_file if path else path

        moved = {
            "dirpath": self.dirpath,
            "best_model_path": here(state_dict["best_model_path"]),
            "kth_best_model_path": here(state_dict.get("kth_best_model_path", "")),
            "best_k_models": {here(path): score for path, score in state_dict.get("best_k_models", {}).items()},
        }
        super().load_state_dict({**state_dict, **moved})


class ReportEachEpoch(pl.Callback):
    """Reports after every epoch (its validation included), with epoch count and time, and checkpoints it when one is due.

    A checkpoint is due at the last epoch and once ``checkpoint_every_s`` seconds have passed since the previous one
    (0: every epoch), as Lightning's ``ModelCheckpoint(train_time_interval=...)`` paces them: saving and storing one
    costs tens of milliseconds, most of a short epoch.

    Each checkpoint holds the metrics reported with it. Resumed from the last epoch's checkpoint (its driver was
    lost before the trial's end was recorded), Lightning trains nothing, so those metrics are reported again.
    """

    def __init__(self, report: Report, checkpoint_root: str, checkpoint_every_s: float = 0.0, best: KeepBestEpoch | None = None):
        self.report = report
        self.checkpoint_root = checkpoint_root
        self.checkpoint_every_s = checkpoint_every_s
        self.best = best  # its file goes into each checkpoint folder: a trial continued from one keeps its best epoch
        self._epoch_started = self._last_checkpoint = time.perf_counter()
        self._metrics: dict[str, float] = {}  # the latest epoch's, saved with each checkpoint
        self._reported = False

    def state_dict(self) -> dict[str, Any]:
        return {"metrics": self._metrics}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._metrics = dict(state_dict.get("metrics", {}))

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_started = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Here, unlike at validation end, the training epoch's own averages (train_loss) are final too.
        metrics = finite_floats(trainer.callback_metrics)
        epoch = trainer.current_epoch + 1
        now = time.perf_counter()
        metrics["epoch"] = float(epoch)
        metrics["epoch_seconds"] = now - self._epoch_started
        self._metrics = metrics
        checkpoint_dir = None
        if epoch >= trainer.max_epochs or now - self._last_checkpoint >= self.checkpoint_every_s:
            # A fresh folder per checkpoint: the receiver may move or copy it away.
            checkpoint_dir = tempfile.mkdtemp(prefix=f"epoch{epoch}_", dir=self.checkpoint_root)
            trainer.save_checkpoint(os.path.join(checkpoint_dir, CHECKPOINT_FILE))
            if self.best is not None and os.path.exists(self.best.best_file):  # written by rank 0 only
                shutil.copy2(self.best.best_file, os.path.join(checkpoint_dir, BEST_CHECKPOINT_FILE))
            self._last_checkpoint = time.perf_counter()
        self.report(metrics, checkpoint_dir)
        self._reported = True

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._reported and self._metrics.get("epoch", 0) >= trainer.max_epochs:
            self.report(self._metrics, None)


def quiet_lightning() -> None:
    """Lightning's start-up notes (accelerators, tips, checkpoint loading) say nothing a tune user needs."""
    for name in ("pytorch_lightning", "lightning", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="pytorch_lightning")
    warnings.filterwarnings("ignore", message=".*weights_only.*")


class WeightsMismatch(ValueError):
    """Initial weights that do not fit the model a config builds (another model, or another size of it)."""


def checkpoint_weights(path: str) -> dict[str, torch.Tensor]:
    """The model weights of a Lightning checkpoint file, loaded as data only; ``ValueError`` for a file that holds none."""
    try:
        # weights_only: a checkpoint holds tensors and plain values; loading one never runs code it carries.
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds (UnpicklingError, RuntimeError, OSError) for a file it cannot read
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"cannot load {path} as a checkpoint: {reason}") from exc
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{path} is not a Lightning checkpoint (it holds no state_dict)")
    return checkpoint["state_dict"]


def remove_orphaned_checkpoints() -> None:
    """Deletes the checkpoint folders :func:`fit` left in the temporary folder from processes that are gone.

    A training process killed outright (the kernel's out-of-memory killer, ``kill -9``, a Ray worker lost with its
    node's processes) never runs ``fit``'s cleanup: its last and best checkpoints stay in the temporary folder, a
    model's size each time. No library removes another process's temporary files, hence this sweep: :func:`fit` runs it
    before each training, and a study's driver when the study ends.
    """
    for folder in Path(tempfile.gettempdir()).glob(f"{CHECKPOINT_ROOT_PREFIX}*_*"):
        pid = folder.name[len(CHECKPOINT_ROOT_PREFIX) :].split("_", 1)[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    if os.name != "posix":  # os.kill(pid, 0) would end the process on Windows: keep its folder
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def device_name(accelerator: str) -> str:
    """What the trial ran on, in words: "cpu" or the GPU's name."""
    if accelerator != "cpu" and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.cuda.current_device())
    return "cpu"


def fit(
    family: TrainerFamily,
    config: Mapping[str, Any],
    *,
    max_epochs: int,
    report: Report | None = None,
    resume_from: str | None = None,
    stop_on_non_finite: str | None = "val_loss",
    accelerator: str = "auto",
    devices: int | str = "auto",
    strategy: str | pl.strategies.Strategy = "auto",
    plugins: list | None = None,
    seed: int = 0,
    progress_bar: bool = False,
    checkpoint_every_s: float = 0.0,
    keep_best_by: tuple[str, str] | None = None,
    initial_weights: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, float]:
    """Train one config for ``max_epochs`` and return the last validation epoch's metrics.

    ``config`` is resolved once, by ``family.resolve``: a key the family does not know raises
    ``ValueError`` (a value in place of a section ``TypeError``) before anything is built.

    ``resume_from`` is a checkpoint folder given earlier to ``report``: training continues after
    its epoch. A non-finite ``stop_on_non_finite`` metric ends training at once (Lightning's
    EarlyStopping with ``check_finite``), so a diverging config costs one epoch, not the budget.
    ``strategy`` and ``plugins`` go to ``pl.Trainer`` as they are: a DDP strategy and its cluster
    environment make this one process a rank of a distributed run, and ``report`` is called on every rank.
    ``checkpoint_every_s`` paces the checkpoints handed to ``report`` (see :class:`ReportEachEpoch`).
    ``keep_best_by`` (a metric and "min" or "max") keeps the best epoch's weights: each checkpoint folder
    handed to ``report`` holds them too, as :data:`BEST_CHECKPOINT_FILE`.
    A Lightning logger the family's :meth:`~TrainerFamily.trainer_options` names is kept (no logger by default).
    ``initial_weights`` (see :func:`checkpoint_weights`) are loaded into the model before training starts (:class:`WeightsMismatch` if they do not fit it).
    """
    resolved = family.resolve(config)
    quiet_lightning()
    pl.seed_everything(seed, workers=True, verbose=False)
    model = family.build_model(resolved)
    if initial_weights is not None:
        try:
            model.load_state_dict(initial_weights)
        except RuntimeError as exc:  # torch names each missing or misshapen tensor on a line after its title
            lines = str(exc).strip().splitlines()
            raise WeightsMismatch(f"the weights do not fit this config's model: {lines[min(1, len(lines) - 1)].strip()}") from exc
    data = family.build_data(resolved)
    callbacks = list(family.callbacks(resolved))
    if stop_on_non_finite:
        callbacks.append(
            pl.callbacks.EarlyStopping(
                monitor=stop_on_non_finite, patience=math.inf, check_finite=True, strict=False, verbose=False
            )
        )
    remove_orphaned_checkpoints()
    with tempfile.TemporaryDirectory(prefix=f"{CHECKPOINT_ROOT_PREFIX}{os.getpid()}_") as checkpoint_root:
        best = None
        if keep_best_by is not None:
            best = KeepBestEpoch(os.path.join(checkpoint_root, "best"), *keep_best_by)
            callbacks.append(best)
            if resume_from and os.path.exists(os.path.join(resume_from, BEST_CHECKPOINT_FILE)):
                os.makedirs(best.dirpath, exist_ok=True)
                shutil.copy2(os.path.join(resume_from, BEST_CHECKPOINT_FILE), best.best_file)
        if report is not None:
            callbacks.append(ReportEachEpoch(report, checkpoint_root, checkpoint_every_s, best))
        trainer = pl.Trainer(
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=devices,
            strategy=strategy,
            plugins=plugins,
            callbacks=callbacks,
            enable_checkpointing=best is not None,
            enable_progress_bar=progress_bar,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            **{"logger": False, **family.trainer_options(resolved)},  # the family's own logger, if it names one
        )
        ckpt_path = os.path.join(resume_from, CHECKPOINT_FILE) if resume_from else None
        # weights_only: a checkpoint holds tensors and plain values; loading one never runs code it carries.
        trainer.fit(model, datamodule=data, ckpt_path=ckpt_path, weights_only=True)
        return finite_floats(trainer.callback_metrics)
