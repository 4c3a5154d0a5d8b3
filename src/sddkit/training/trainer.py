"""``Trainer``: the training loop around a strategy's single optimisation step.

The trainer owns everything but the step itself: building the model, data, optimiser and
schedule from a :class:`~sddkit.training.recipe.TrainRecipe`; validation (EER, lower is better),
early stopping, best-checkpoint selection, averaging of the top-k checkpoints; checkpoints and
``--resume``; TensorBoard logging and a tqdm progress bar (plain periodic lines when stderr is a log file,
:mod:`sddkit.progress`); DDP; exporting ``best/`` and ``final/`` model directories.

    out_dir/
      run.json           seed, resolved recipe, package versions, git commit (the latest session's), and one
                         entry per (re)start with its own: recipe, versions, git, cwd, torch threads, the
                         SHA-256 of each protocol file read, the utterances read (counts per class), the command
                         line (``argv``), device, and its ``started`` and ``finished`` times (``finished`` and
                         ``end_step`` null until it has exported best/ and final/: an interrupted session's stay so)
      metrics.jsonl      one line per validation: step (optimiser steps taken), epoch (epochs completed when it
                         ran: 1 at the end of the first), val_eer (a fraction), val_loss, n (utterances)
      tb/                TensorBoard event files
      checkpoints/       see sddkit.training.checkpoint (``latest`` + the top-k by validation EER); with
                         trainer.ema_decay their ``model`` is the moving average of the weights with their
                         re-estimated batch-norm statistics (the model validated and exported) and ``raw_model``
                         the weights and statistics training goes on from
      best/  final/      sddkit model directories (``sdd score``-ready), val EER in metadata, and ``steps``, those
                         their weights were trained for (best/: its checkpoint's, the run's in ``run_steps``); their
                         ``train_recipe`` is the recipe in force when their weights were saved (best/: its
                         checkpoint's), with ``resumes`` and ``checkpoint_recipe_changes`` after a resume under a
                         changed recipe; best/'s model config and inference window are its checkpoint's too, and
                         so are its git commit and versions (the session's that saved it; final/'s: the last one's)
      molex_report.json  with a ``molex`` section: forgetting and expert use per attack system
                         (``expert_use``: mean over the adapted layers; ``expert_use_per_layer``: each layer's,
                         one row per adapted projection in the order ``layers`` names them, ``layers.0.q``, ...)

Reproducibility: the data order is a function of (seed, epoch, rank); the python/numpy/torch
generators, optimiser, schedule and strategy states are checkpointed; validation runs with the
generators preserved. A run resumed from a checkpoint therefore continues bit-for-bit like an
uninterrupted run on CPU (single process). Under DDP every rank's generator states and strategy state
(MLDG's split generator) are saved and a resume with the same number of processes restores each rank's
own (ERM and MLDG on CPU continue bit-for-bit); with another number of processes the ranks after the
first take fresh streams of their own and rank 0's strategy state.

A resume under a changed recipe logs one warning naming every changed key (``optimizer.lr: 0.01 -> 0.001``;
more steps or epochs and the run settings of :data:`RESUME_SETTINGS` are not news). The new values apply
from there on: the optimiser's moments and the schedule's position come from the checkpoint, its lr and
hyperparameters from the recipe; another seed draws fresh random streams, and another ``strategy.seed`` (or
recipe seed, without one) MLDG's split stream built from it; another ``trainer.patience`` decides anew whether
the run has stopped early. A change the checkpoint's weights or optimiser moments cannot fit (another width, other
trainable parameters) is a CheckpointError naming the changed keys. So is a pretrained folder whose frozen weights
are no longer those the checkpoint was trained over (another encoder saved under the same path): checkpoints leave
those weights to the folder, and record their digest. So is one whose feature-extractor file now decides another
waveform normalisation for an encoder with ``normalize: null`` than at the run's start (recorded in the checkpoints'
model config; the recipe's own ``normalize`` changed is a recipe change), or whose config.json now decides another
value of a setting the recipe leaves to it (dropout, SpecAugment masking, ``layer_norm_eps``: recorded in the model
config's encoder ``overrides``). So is a resume that switches
``trainer.ema_decay`` on or off (the checkpoints ranked so far hold one kind of model); another decay applies from the
restored step on.

Such a resume is recorded, with more steps or epochs too (they replan the schedule; only the run settings are left
out): ``TrainState.resumes`` gets ``{"step", "checkpoint", "changes"}``, which every later checkpoint keeps beside
the recipe it was saved under. best/ reports its checkpoint's recipe and resumes (not the last session's); final/
the last session's recipe, every resume, and in ``checkpoint_recipe_changes`` the averaged checkpoints saved under
other values (``key: the checkpoint's value -> train_recipe's``). A resume under the same recipe records nothing.
A resume of a finished run takes no step and exports best/ and final/ again from its checkpoints: with another
``trainer.average_bn`` (e.g. ``reestimate``, batch-norm statistics of final/'s average re-estimated) final/ changes,
best/ stays as it was. A final/ of fewer checkpoints than ``trainer.average_top_k`` asks for (some deleted, a raised
average_top_k, too few validations), or of the last weights, says so: a warning, and the ``average_top_k`` asked for
and the ``ranked_checkpoints`` there were in its metadata. A best/ exported from a top-k checkpoint deleted since is
moved aside to ``best.<checkpoint>/`` at the end, not written over: its weights exist nowhere else.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import logging
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate

from sddkit.config import plain_config, set_away_from_default, to_dict
from sddkit.data.table import UtteranceTable
from sddkit.detectors.model_dir import (
    atomic_write_bytes,
    load_state_checked,
    read_model_config,
    save_model_dir,
    state_to_save,
    weights_digest,
)
from sddkit.documents import file_digest
from sddkit.errors import (
    AudioError,
    AudioTooLongError,
    CheckpointError,
    ConfigError,
    SddkitError,
    TrainingDivergedError,
)
from sddkit.frontends.lora import average_lora_states
from sddkit.frontends.molex import average_molex_states
from sddkit.locks import ExclusiveLock
from sddkit.outputs import folder_failure, why_unwritable
from sddkit.pretrained import absolute_pretrained_paths, pretrained_entries, pretrained_folders, reloadable_names
from sddkit.registry import get_registry
from sddkit.training import checkpoint as ckpt
from sddkit.training.assembly import (
    build_recipe_mixture,
    check_frozen_expert_dirs,
    check_reassembly,
    nothing_to_learn,
)
from sddkit.training.data import (
    EMA_BN_EPOCH,
    SkipBatches,
    build_dataset,
    check_audio_files,
    epoch_batches,
    loader_generator,
    read_tables,
    read_train_table,
    read_val_table,
    warn_shared_files,
    worker_errors,
)
from sddkit.training.distributed import (
    DistInfo,
    all_gather_objects,
    all_started,
    barrier,
    broadcast_buffers,
    broadcast_object,
    dist_info_from_env,
    init_process_group,
    mean_over_ranks,
    peer_lost,
    select_device,
)
from sddkit.training.em import check_em_recipe, collect_frames, em_backend
from sddkit.training.ema import BatchNormEstimate, WeightEMA, updated_batch_norms
from sddkit.training.evaluate import EvalResult, evaluate
from sddkit.training.exports import export_window_samples, keep_calibration, with_pretrained_of
from sddkit.training.losses import DetectionLoss, check_alignment_data
from sddkit.training.molex import (
    ExpertAddition,
    describe_by_attack,
    grown_frontend_config,
    growth_problem,
    molex_layer_names,
    molex_report,
    trained_molex_problem,
)
from sddkit.training.provenance import (
    callers_global_state,
    changed_protocols,
    configure_determinism,
    device_name,
    git_commit,
    package_versions,
    preserved_rng,
    rank_seed,
    seed_everything,
)
from sddkit.training.recipe import RUN_SETTINGS, ProtocolSpec, TrainRecipe, as_specs, recipe_changes
from sddkit.training.schedules import build_optimizer, build_scheduler, trainable_parameters
from sddkit.training.strategy import StepContext, StepResult, with_domain_blocks

log = logging.getLogger("sddkit.training")


@dataclass
class TrainState:
    """The loop's counters and model-selection bookkeeping (saved in every checkpoint)."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_eer: float | None = None
    best_step: int | None = None
    bad_validations: int = 0
    stopped_early: bool = False
    ranked: list[dict[str, Any]] = field(default_factory=list)  # top-k {"name", "step", "eer"}, best first
    last_saved_step: int = -1
    molex_before: dict[str, Any] | None = None  # old-domain results before expert addition (molex report)
    # each resume under a changed recipe, oldest first: {"step", "checkpoint", "changes"}; a checkpoint's own list
    # says which recipes the weights it holds were trained under (its "recipe" is the last of them)
    resumes: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns."""

    out_dir: Path
    step: int
    epoch: int
    best_eer: float | None  # val EER and step of the checkpoint exported as best/ (the run's lowest that is left)
    best_step: int | None
    stopped_early: bool
    best_dir: Path | None
    final_dir: Path | None
    final_eer: float | None
    history: list[dict[str, Any]]
    batch_in_epoch: int = 0  # steps taken into an epoch the run left unfinished (trainer.max_steps ended it)


# Recipe keys a resume may change without it being news: what a resume is for (more steps or epochs) and the
# run settings, which change how the run goes, not what it computes
RESUME_SETTINGS = RUN_SETTINGS | {"trainer.max_steps", "trainer.epochs"}


class Trainer:
    """Train a detector as a recipe says.

    Components may be injected instead of built from the recipe (tests, notebooks): ``model``
    (with ``model_config``, the dict that rebuilds it through ``architecture`` in model
    directories; without it the recipe's ``model``, which must then build the same parameters and
    buffers, else a ConfigError before the first step: ``best/`` and ``final/`` would not load),
    ``train_data`` / ``val_data`` (datasets yielding the ``UtteranceDataset`` item dict, e.g.
    :func:`~sddkit.training.data.build_dataset` of an ``UtteranceTable``) with their tables
    ``train_table`` / ``val_table`` (optional: the utterance counts of ``run.json`` and the warning
    about validation files that training reads).
    """

    def __init__(
        self,
        recipe: TrainRecipe,
        *,
        model: nn.Module | None = None,
        model_config: dict[str, Any] | Any | None = None,
        architecture: str = "detector",
        train_data: Dataset | None = None,
        val_data: Dataset | None = None,
        val_table: UtteranceTable | None = None,
        resume: bool = False,
        train_table: UtteranceTable | None = None,
    ):
        self.recipe = recipe
        self.cfg = recipe.trainer
        self._model = model
        # a DetectorConfig (or other config dataclass) is recorded as the dict the model directories hold
        self.model_config = plain_config(model_config)
        self.architecture = architecture
        self._train_data = train_data
        self._val_data = val_data
        self._train_table = train_table  # the given train_data's table (read from the recipe's data.train otherwise)
        self.val_table = val_table
        self.resume = resume
        # how the user continues this run, as the messages of an interruption or a failed save say it (`sdd cv`
        # resumes its folds when rerun, and has no --resume)
        self.resume_with = "--resume"
        # whether that resume may take overrides (a data spec's exclude leaving out a file that fails): sdd cv's may not
        self.resume_takes_overrides = True
        self._validating = False  # whether the loop is validating (else training)
        self.out_dir = Path(self.cfg.out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.state = TrainState()
        self.history: list[dict[str, Any]] = []
        self.expert_addition: ExpertAddition | None = None
        self._writer: Any = None
        self._created_group = False
        self._completed = False
        self.assembled = False  # a mixture with nothing to learn, exported as built (set by _setup)
        self.em_fitted = False  # a detector whose back-end is fitted by EM, not by gradient steps (set by _setup)
        # a resume's mixture.expert_dirs of frozen experts, checked against its checkpoint's (_build_model)
        self._frozen_expert_dirs: list[str] = []
        self._window: dict[str, list[torch.Tensor]] = {}
        self._lock: ExclusiveLock | None = None
        self.ema: WeightEMA | None = None  # trainer.ema_decay's moving average of the weights (built by _setup)
        # the checkpoint resumed from and its averaged model, which _setup's WeightEMA continues
        self._resumed_ema: tuple[str, dict[str, torch.Tensor]] | None = None
        # top-k checkpoints a resume found deleted: why final/ may hold fewer than trainer.average_top_k
        self._gone_top_k: list[str] = []
        # the batch-norm statistics of the averaged weights (trainer.ema_decay with batch or instance norms whose
        # running statistics training updates; built by _setup), and the last ones estimated, with the step they are of
        self.bn_estimate: BatchNormEstimate | None = None
        self._estimated_bn: tuple[int, dict[str, torch.Tensor]] | None = None

    # --- public ----------------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        """Train (or resume), then export ``best/`` and ``final/``; returns the outcome.

        The run seeds the global generators and sets torch's determinism switches for itself; the caller's are
        given back when it returns or raises (:func:`callers_global_state`)."""
        with callers_global_state():
            return self._fit()

    def _fit(self) -> TrainResult:
        try:
            self._setup()
            if self.assembled:
                result = self._finish_assembly()
            elif self.em_fitted:
                result = self._fit_em()
            else:
                self._loop()
                result = self._finish()
            self._molex_report(self.state.molex_before)
            self._record_finish()
            self._completed = True
            return result
        except KeyboardInterrupt:
            self._interrupted()
            raise
        except RuntimeError as exc:
            lost = peer_lost(exc, getattr(self, "info", DistInfo()))
            if lost is None:
                raise
            raise lost from None
        finally:
            self._teardown()

    def _interrupted(self) -> None:
        """Say, on a Ctrl-C, what the run keeps and how to go on (the CLI itself says only "interrupted")."""
        if not getattr(self, "info", DistInfo()).is_main:
            return
        try:
            latest = ckpt.latest_checkpoint(self.ckpt_dir)
        except CheckpointError:
            latest = None
        if latest is None:
            log.warning("interrupted at step %d before any checkpoint was saved", self.state.step)
        else:
            log.warning(
                "interrupted at step %d: the last checkpoint, %s, is kept; %s continues from it (the steps "
                "after it are taken again)",
                self.state.step,
                latest,
                self.resume_with,
            )

    # --- set-up -----------------------------------------------------------------------------------------
    def _setup(self) -> None:
        r, cfg = self.recipe, self.cfg
        self.info: DistInfo = dist_info_from_env()
        # the process group first: a process stopped by a check of out_dir (in use by another run, an earlier run's
        # checkpoints) stops the others at once; before it, they waited in init_process_group until its timeout
        # (torchrun ends them, a launch of one's own did not)
        self.device = select_device(cfg.device, self.info)
        self._choose_precision()
        self._created_group = init_process_group(self.info, self.device)
        failure: Exception | None = None
        try:
            self._check_out_dir()  # before anything is built or decoded: a bad out_dir is known at once
        except Exception as exc:  # noqa: BLE001  (every rank learns of it below, then it is raised)
            failure = exc
        self._all_started(failure)
        configure_determinism(cfg.deterministic)
        seed_everything(r.seed)  # identical initial weights on every rank
        self.module = self._built_model().to(self.device)
        # before any data is read: a gmm back-end with an MLDG strategy, trainer.ema_decay, ... is refused at once
        check_em_recipe(r, self.module, world_size=self.info.world_size)
        self.em_fitted = em_backend(self.module) is not None
        self.loss_fn = DetectionLoss.for_model(r.loss, self.module)
        try:
            resuming = self.resume and ckpt.latest_checkpoint(self.ckpt_dir) is not None
        except CheckpointError as exc:  # a damaged pointer, or one naming a checkpoint gone
            raise ckpt.unusable_latest(self.ckpt_dir, self.out_dir, exc) from None
        finished = self._exported_models()
        self._check_em_resume(resuming, finished)
        if self.resume and not resuming and finished and not nothing_to_learn(self.module):
            # its checkpoints deleted (to save space): the run would start afresh and, at its end, replace the
            # earlier run's exported models, which a fresh run into this out_dir is refused to do (before the data
            # is read, and before molex.old_eval is scored; a mixture with nothing to learn only exports again what
            # it exported)
            raise ConfigError(
                f"trainer.out_dir={self.out_dir} holds the exported model(s) {' and '.join(finished)} of an "
                f"earlier run but no checkpoint under {self.ckpt_dir} to continue it from ({self.resume_with} "
                "would train afresh and replace them); continue from one of them in another trainer.out_dir with "
                "init_from=, or delete them to train there afresh"
            )
        if resuming:
            self._check_resumed_growth()  # before the data is read and molex.old_eval scored
        self._check_data_files()
        # old-domain results of the model as it was, before any expert is added (a resume has them saved, unless
        # molex.old_eval changed since: then its saved ones are of other data, or none, and are scored again here)
        rescore_before = resuming and self._old_eval_changed()
        molex_before = self._molex_before() if not resuming or rescore_before else None
        self._grow(self.module)
        seed_everything(rank_seed(r.seed, self.info.rank))  # then distinct dropout/augmentation streams per rank
        self.assembled = nothing_to_learn(self.module)
        if self.assembled:
            self._setup_assembly(resuming, finished)
            return
        if self.em_fitted:
            self._setup_em()
            return

        if self._train_data is None:
            self._check_crop_lengths()  # before decoding a corpus that could not be used
        self._build_data()
        self.strategy = get_registry("strategy").build(r.strategy, seed=r.seed)
        self.optimizer = build_optimizer(trainable_parameters(self.module), r.optimizer)
        if self.expert_addition is not None:
            self.expert_addition.attach(self.optimizer)
        first_epoch = epoch_batches(self.train_data, r.data, seed=r.seed, epoch=0, info=self.info)  # type: ignore[arg-type]
        self.steps_per_epoch = len(first_epoch)  # type: ignore[arg-type]
        if self.info.enabled:
            self._check_ranks_agree()
        check_batches = getattr(self.strategy, "check_batches", None)  # a strategy that needs batches of a kind
        if check_batches is not None:
            check_batches(first_epoch)
        check_data = getattr(self.strategy, "check_data", None)  # ... or training data of a kind (MLDG: domains)
        if check_data is not None:
            check_data(self.train_data, r.data.domain_column)
        check_alignment_data(r.loss, self.train_data, r.data.domain_column)  # a penalty no batch could take
        if cfg.ema_decay is not None:
            self.bn_estimate = self._build_bn_estimate()
        elif cfg.average_bn != "reestimate" and set_away_from_default(cfg, ["ema_bn_batches"]) and self.info.is_main:
            # read by ema_decay's and average_bn: reestimate's re-estimation only
            log.warning(
                "trainer.ema_bn_batches=%d has no effect without trainer.ema_decay or trainer.average_bn: reestimate",
                cfg.ema_bn_batches,
            )
        planned = cfg.epochs * self.steps_per_epoch
        self.total_steps = min(planned, cfg.max_steps) if cfg.max_steps else planned
        # a resume plans again over its steps taken and left (_replan), and says then whether the warm-up fits
        # (said by rank 0 only: every rank plans alike, and each said it under torchrun)
        self.scheduler = build_scheduler(
            self.optimizer, r.schedule, self.total_steps, check=not resuming and self.info.is_main
        )
        self._step_lr = self.optimizer.param_groups[0]["lr"]  # the lr of the last step taken (logged with it)
        resumed_from = self._load_latest() if self.resume else None
        if resumed_from is None or rescore_before:
            self.state.molex_before = molex_before

        self.model: nn.Module = self.module
        if self.info.enabled:
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(
                self.module,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=cfg.find_unused_parameters,
            )
        if cfg.ema_decay is not None:
            # after the growth (the parameters it averages are final) and DDP's broadcast of rank 0's weights: the
            # weights the first step starts from, or those of the checkpoint resumed from
            self.ema = WeightEMA(self.module, cfg.ema_decay)
            if self._resumed_ema is not None:
                self.ema.load_model_state(self._resumed_ema[1], self._resumed_ema[0])
                self._resumed_ema = None
        self.ctx = StepContext(
            model=self.model,
            module=self.module,
            optimizer=self.optimizer,
            loss_fn=self.loss_fn,
            grad_clip=cfg.grad_clip,
            autocast=self._autocast,
            world_size=self.info.world_size,
        )
        self._open_run(resumed_from)

    def _check_out_dir(self) -> None:
        """Claim out_dir (the main process), and refuse what it holds that this run would spoil."""
        if self.info.is_main:
            self._claim_out_dir()
        if not self.resume and (self.ckpt_dir / ckpt.LATEST).exists():
            # a fresh run would prune the earlier run's checkpoints and a later --resume would mix the two
            raise ConfigError(
                f"trainer.out_dir={self.out_dir} holds the checkpoints of an earlier run: pass --resume to "
                "continue it, or choose another trainer.out_dir (or delete that one) to start afresh"
            )
        adopted = ckpt.adopt_lone_checkpoint(self.ckpt_dir) if self.resume else None
        if adopted is not None:
            log.warning(
                "%s had no '%s' pointer: resuming from its one checkpoint, %s", self.ckpt_dir, ckpt.LATEST, adopted
            )
        orphans = ckpt.checkpoints_without_pointer(self.ckpt_dir)
        if orphans:
            # --resume would start from scratch and a fresh run too; either one's first save prunes them
            raise ConfigError(
                f"{self.ckpt_dir} holds checkpoint(s) {', '.join(orphans[-3:])} but no '{ckpt.LATEST}' pointer "
                f"(deleted?): write the name of the one to continue from into {self.ckpt_dir / ckpt.LATEST} and pass "
                "--resume, or move them away to start afresh"
            )
        finished = self._exported_models()
        if not self.resume and finished:
            # a run that saved no checkpoint (an average ensemble, a crash before the first save) would
            # otherwise replace the earlier run's exported models without a word
            raise ConfigError(
                f"trainer.out_dir={self.out_dir} holds the exported model(s) {' and '.join(finished)} of an earlier "
                "run: choose another trainer.out_dir, or delete them to train there afresh"
            )

    def _check_em_resume(self, resuming: bool, finished: list[str]) -> None:
        """Refuse a resume of an EM fit (``em_fitted``) that would replace exported models: an EM fit saves no
        checkpoint and reads none, so it would fit afresh over the exports of an earlier fit (the generic error's
        init_from is refused for it) or of a gradient run whose checkpoints are there."""
        if not self.em_fitted:
            return
        where = f"trainer.out_dir={self.out_dir}"
        if resuming:
            raise ConfigError(
                f"{where} holds the checkpoints of a run that trained by gradient steps (under {self.ckpt_dir}), but "
                "this recipe's model.backend gmm is fitted by EM, which continues no checkpoint: its export would "
                "replace that run's best/ and final/; fit it in another trainer.out_dir"
            )
        if self.resume and finished:
            raise ConfigError(
                f"{where} holds the exported model(s) {' and '.join(finished)} of an earlier run, and model.backend "
                f"gmm is fitted by EM in one go, saving no checkpoint: {self.resume_with} has nothing to continue. "
                "Those folders are the fitted model (sdd score, sdd eval, sdd calibrate and sdd export-onnx take them "
                "as they are); to fit again (other settings, or a run stopped before it finished), choose another "
                "trainer.out_dir, or delete them to fit there afresh (the same recipe and seed fit the same mixtures)"
            )

    def _exported_models(self) -> list[str]:
        """``best/`` and ``final/`` where an earlier run in out_dir exported them."""
        return [f"{d}/" for d in ("best", "final") if (self.out_dir / d).is_dir()]

    def _all_started(self, failure: Exception | None) -> None:
        """Raise ``failure`` (this process's, from the checks of out_dir), or another process's as a
        :class:`PeerProcessError`: every rank stops alike, none waits for the others in a later collective."""
        all_started(failure, self.info)

    def _claim_out_dir(self) -> None:
        """Create out_dir, check it can be written, and lock it for this run (``out_dir/.lock``): a second
        run into the same folder is refused, not interleaved with this one's checkpoints and logs."""
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"trainer.out_dir={self.out_dir}: cannot create it ({folder_failure(exc)})") from None
        reason = why_unwritable(self.out_dir / f".write-test-{os.getpid()}")
        if reason is not None:
            raise ConfigError(f"trainer.out_dir={self.out_dir}: cannot write there ({reason})")
        self._lock = ExclusiveLock(
            self.out_dir / ".lock",
            ConfigError(
                f"trainer.out_dir={self.out_dir} is in use by another sdd train run (it holds .lock there); "
                "wait for it to finish, or choose another trainer.out_dir"
            ),
        )

    def _open_run(self, resumed_from: str | None) -> None:
        """The main process records the run and opens its logs in out_dir (claimed by _setup)."""
        if self.info.is_main:
            try:
                self._write_run_info(resumed_from)
                # this run's validations up to where it (re)starts: one logged before a crash mid-save, whose
                # checkpoint never landed, is done again after the resume and must not be listed twice
                metrics = self.out_dir / "metrics.jsonl"
                if self.history or metrics.exists():
                    atomic_write_bytes(metrics, "".join(json.dumps(h) + "\n" for h in self.history).encode())
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(log_dir=str(self.out_dir / "tb"), purge_step=self.state.step + 1)
            except OSError as exc:
                raise ConfigError(f"trainer.out_dir={self.out_dir}: cannot write the run record ({exc})") from None

    def _built_model(self) -> nn.Module:
        """:meth:`_build_model`, its error of a resume whose pretrained folder is gone saying what to do."""
        try:
            return self._build_model()
        except ConfigError as exc:
            hint = self._resume_pretrained_hint()
            if not hint:
                raise
            raise ConfigError(f"{exc}{hint}") from None

    def _resume_pretrained_hint(self) -> str:
        """What to do when a resume cannot build the recipe's model because a ``pretrained`` folder is gone (the run
        moved to another machine, the folder moved): else ''. Checkpoints hold only what training changed, so the
        frozen encoder must be read from a folder again; the bare "not a local Hugging Face model directory" left a
        user thinking the checkpoint was the whole model."""
        if not self.resume or self.recipe.model is None:  # init_from and mixtures load model directories: they say
            return ""
        try:
            latest = ckpt.latest_checkpoint(self.ckpt_dir)
        except CheckpointError:
            latest = None
        keys = [
            key
            for key, folder in pretrained_entries(to_dict(self.recipe.model))
            if not (Path(folder).expanduser() / "config.json").is_file()
        ]
        if latest is None or not keys:
            return ""
        overrides = " ".join(f"{k}=NEW_PATH" for k in keys)
        return (
            f"; {self.resume_with} continues {latest}, which holds only the weights training changed: the frozen "
            f"pretrained weights are read again from that folder. Restore it there, or give its new place "
            f"({overrides} with {self.resume_with}; the resume checks it holds the weights the run was trained over)"
        )

    def _setup_assembly(self, resuming: bool, finished: list[str]) -> None:
        """Set-up for a mixture with nothing to learn: its val data, no optimiser, no training data read."""
        r = self.recipe
        if self.resume:
            check_reassembly(
                self.module,
                out_dir=self.out_dir,
                ckpt_dir=self.ckpt_dir,
                resuming=resuming,
                finished=finished,
                resume_with=self.resume_with,
            )
        if r.data.train or self._train_data is not None:
            log.warning("data.train is not read: the mixture's gate has no parameters and its experts are frozen")
        if self.cfg.ema_decay is not None:
            log.warning("trainer.ema_decay has no effect: nothing is trained, so there are no weights to average")
        self.train_table = None
        self._build_val_data()
        self.total_steps = 0
        self.model = self.module
        self._open_run(None)

    def _setup_em(self) -> None:
        """Set-up for a back-end fitted by EM (_fit_em): its train and val data; no optimiser, strategy, checkpoint."""
        if self._train_data is None:
            self._check_crop_lengths()
        self._build_data()
        self.total_steps = 0
        self.model = self.module
        self._open_run(None)

    def _choose_precision(self) -> None:
        """Whether the forward passes run under bfloat16 autocast on this device (:func:`bf16_autocast`)."""
        self._bf16, note = bf16_autocast(self.cfg.bf16, self.device)
        if note and self.info.is_main:
            log.warning(note)

    def _autocast(self) -> AbstractContextManager[Any]:
        if self._bf16:  # trainer.bf16 on a GPU with bfloat16 tensor cores (bf16_autocast)
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _build_model(self) -> nn.Module:
        r = self.recipe
        if self._model is not None:
            model = self._model
            if self.model_config is None and r.model is not None:
                self.model_config = absolute_pretrained_paths(to_dict(r.model))
            # the exports record model_config, not the module: one that builds another model trained a whole run
            # whose best/ and final/ no load could read ("config.json describes another model")
            _check_given_model(model, self.model_config, self.architecture)
        elif r.init_from is not None:
            return self._init_from(r.init_from)
        elif r.mixture is not None:
            built = build_recipe_mixture(
                r.mixture,
                ckpt_dir=self.ckpt_dir if self.resume else None,
                out_dir=self.out_dir,
                log_notes=self.info.is_main,
            )
            self.model_config, self.architecture = built.model_config, "mixture"
            self._frozen_expert_dirs = built.frozen_expert_dirs
            # frozen experts hold trained weights that no pretrained file restores: export everything
            self._reloadable = set()
            return built.model
        else:
            from sddkit.detectors.detector import build_detector
            from sddkit.frontends.encoders import recorded_folder_config

            model = build_detector(r.model)  # type: ignore[arg-type]
            # loadable from any folder, with the waveform normalisation and the settings (dropout, SpecAugment, layer
            # norm epsilon) an encoder's pretrained folder decided now written out: what the checkpoints record, best/
            # exported from one of them, and a resume compares (_check_folder_normalize, _check_folder_settings);
            # left to the folder, an export or a resume decided them again from the folder found then
            self.model_config = recorded_folder_config(absolute_pretrained_paths(to_dict(r.model)))
        # Frozen parameters the builder read from pretrained files come back from them when the model
        # is rebuilt; checkpoints and exports then store the rest only ("trainable" model dirs).
        self._reloadable = reloadable_names(model)
        return model

    def _init_from(self, directory: str) -> nn.Module:
        """Start from a model directory; what reloads from pretrained files is what that directory omits."""
        from safetensors import safe_open

        from sddkit.detectors.model_dir import WEIGHTS_NAME, load_model_dir

        # nothing there: typically the first stage's run, not trained (or not here) yet; a file there (its
        # best/config.json) is no untrained model, and load_model_dir says what it is and what to give instead
        if not Path(directory).exists():
            from sddkit.config import missing_relative_hint

            missing = f"init_from={directory}: no such model directory{missing_relative_hint(directory)}"
            if self.resume and (self.ckpt_dir / ckpt.LATEST).is_file():
                # a resume rebuilds the model from it before loading the checkpoint's weights: "train it first" sent
                # the user to retrain a first stage that was only moved or deleted after this run started from it
                raise CheckpointError(
                    f"{missing}; this run started from it, and --resume builds its model from it again before "
                    f"loading the weights of {self.ckpt_dir}: restore that directory, or give its new place "
                    "(init_from=NEW_PATH --resume: the checkpoint's weights then replace those of the copy)"
                )
            raise CheckpointError(
                f"{missing}; it is the model this recipe starts from: train it first (its recipe's "
                "trainer.out_dir/best), or give its path"
            )
        loaded = load_model_dir(directory)
        model, self.model_config, self.architecture = loaded.model, dict(loaded.model_config), loaded.architecture
        # the recipe checks the MoLEx routers of a model it configures; this one's config comes from the directory
        problem = trained_molex_problem(model)
        if problem is None and self.recipe.molex is not None and self.recipe.molex.add_experts > 0:
            problem = growth_problem(model)  # here, not at the growth: before molex.old_eval is scored with it
        if problem is not None:
            raise ConfigError(f"init_from={directory}: {problem}")
        model.train()
        with safe_open(str(Path(directory) / WEIGHTS_NAME), framework="pt") as f:
            stored = set(f.keys())
        # what the directory stored wins over the pretrained files (e.g. a full-weights directory)
        self._reloadable = reloadable_names(model) - stored
        return model

    def _grow(self, model: nn.Module) -> None:
        """MoLEx expert addition (``molex.add_experts``): grow the front-end, freeze all but the new parts."""
        r = self.recipe
        if r.molex is None or r.molex.add_experts == 0:
            return
        self.expert_addition = ExpertAddition(
            model, r.molex.add_experts, train_backend=r.molex.train_backend, bias=r.molex.new_expert_bias
        )
        if self.model_config is not None and "frontend" in self.model_config:
            front = grown_frontend_config(self.model_config["frontend"], model.frontend)  # type: ignore[arg-type]
            self.model_config = {**self.model_config, "frontend": front}

    def _check_data_files(self) -> None:
        """Every audio file of data.train, data.val and molex.old_eval is there, checked before the old domains are
        scored, a preload decodes and the first step, and again on every resume (files may have gone since): one
        error naming them all, where a file was refused only when first drawn. Datasets given to the trainer are
        the caller's; a mixture with nothing to learn reads no data.train."""
        r = self.recipe
        train = None if self._train_data is not None or nothing_to_learn(self.module) else r.data.train
        check_audio_files(
            [
                ("data.train", train),
                ("data.val", None if self._val_data is not None else r.data.val),
                ("molex.old_eval", r.molex.old_eval if r.molex else None),
            ]
        )

    def _build_data(self) -> None:
        r = self.recipe
        self.train_table = None
        if self._train_data is not None:
            self.train_data = self._train_data
            self.train_table = self._train_table
        else:
            self.train_table = read_train_table(r.data)
            self.train_data = build_dataset(self.train_table, r.data, train=True, seed=r.seed)
        self._build_val_data()

    def _build_val_data(self) -> None:
        r = self.recipe
        if self._val_data is not None:
            self.val_data: Dataset | None = self._val_data
        else:
            self.val_table = read_val_table(r.data)
            self.val_data = (
                None if self.val_table is None else build_dataset(self.val_table, r.data, train=False, seed=r.seed)
            )
        # the tables given with datasets too (train_table, val_table): the same files validated and trained on
        if self.info.is_main and self.val_table is not None and getattr(self, "train_table", None) is not None:
            warn_shared_files(self.train_table, self.val_table)
        if self.val_data is None and self.cfg.patience is not None and self.info.is_main:
            # early stopping counts validations without improvement: with none, the run trains every epoch
            log.warning("trainer.patience=%s has no effect: there is no data.val to validate on", self.cfg.patience)

    def _build_bn_estimate(self) -> BatchNormEstimate | None:
        """The re-estimation of the batch-norm statistics for trainer.ema_decay's averaged weights (and for final/'s
        average of the top k, trainer.average_bn: reestimate), on trainer.ema_bn_batches training batches drawn here
        once; None (nothing drawn) for a model without batch or instance norms whose running statistics training
        updates.

        The batches are those the training sampler gives a single process for a pseudo-epoch no run reaches, with
        that epoch's crops and augmentation: they depend on the recipe seed alone, not on the loop's position or
        the global generators (whose states the draw leaves as they were), so a resume draws them again alike.
        Every process uses these (rank 0's) batches: the statistics every process scores with, and rank 0 saves,
        are one model's."""
        norms = updated_batch_norms(self.module)
        if not norms:
            return None
        r = self.recipe
        with preserved_rng():
            # the loop sets the dataset's epoch again before it loads a batch
            batches = epoch_batches(self.train_data, r.data, seed=r.seed, epoch=EMA_BN_EPOCH, info=DistInfo())
            waveforms = [
                default_collate([self.train_data[key] for key in keys])["waveform"].to(self.device)
                for keys in itertools.islice(iter(batches), self.cfg.ema_bn_batches)
            ]
        seed = int(np.random.SeedSequence([r.seed, EMA_BN_EPOCH]).generate_state(1, np.uint64)[0] >> np.uint64(1))
        return BatchNormEstimate(self.module, norms, waveforms, seed=seed, autocast=self._autocast)

    def _check_crop_lengths(self) -> None:
        """A crop too short for the model fails here, naming the recipe key, not inside the first step."""
        d = self.recipe.data
        lengths = {"data.crop_samples": d.crop_samples}
        if self._val_data is None and d.val and d.val_crop_samples:
            lengths["data.val_crop_samples"] = d.val_crop_samples
        was_training = self.module.training
        # SpecAugment needs a longer input in training only, in the encoders that train mode reaches (a frozen
        # mixture keeps its experts in eval mode): switching the mode flags runs nothing
        self.module.train()
        masking = {  # name -> (encoder, the shortest input it masks)
            name: (m, need)
            for name, m in self.module.named_modules()
            if m.training
            and callable(getattr(m, "masked_min_samples", None))
            and (need := m.masked_min_samples()) is not None
        }
        self.module.eval()  # no dropout: the check consumes no random numbers
        inputs: dict[str, int] = {}  # the input length each masking encoder gets from the training crop

        def record(name: str, _module: nn.Module, args: tuple) -> None:
            if args and isinstance(args[0], torch.Tensor):
                inputs[name] = args[0].shape[-1]

        hooks = [m.register_forward_pre_hook(functools.partial(record, name)) for name, (m, _) in masking.items()]
        try:
            for key, n in lengths.items():
                inputs.clear()
                x = 0.01 * torch.randn(1, n, generator=torch.Generator().manual_seed(0))
                try:
                    with torch.no_grad():
                        self.module(x.to(self.device))
                except AudioTooLongError as exc:  # Whisper's 30 s: "too short" named the wrong bound
                    raise ConfigError(f"{key}={n} is too long for this model: {exc}") from None
                except ValueError as exc:  # back-ends name the minimum they need
                    raise ConfigError(f"{key}={n} is too short for this model: {exc}") from None
                if key == "data.crop_samples":
                    self._check_masked_lengths(key, n, masking, inputs)
        finally:
            for hook in hooks:
                hook.remove()
            self.module.train(was_training)

    def _check_masked_lengths(
        self, key: str, n: int, masking: dict[str, tuple[nn.Module, int]], inputs: dict[str, int]
    ) -> None:
        """The training crop against the SpecAugment span of each encoder that masks in training: too short, the
        first training step failed inside the encoder."""
        for name, got in inputs.items():
            encoder, need = masking[name]
            if got >= need:
                continue
            r = self.recipe
            where = None
            if r.model is not None:
                where = f"model.{name}.spec_augment"
            elif r.mixture is not None and not r.mixture.expert_dirs:
                where = "mixture." + re.sub(r"^experts\.(\d+)", r"experts[\1]", name) + ".spec_augment"
            # else the encoder's config comes from a model directory: its spec_augment is no key of this recipe
            frames = encoder.model.config.mask_time_length
            raise ConfigError(
                f"{key}={n} is too short for {where or f'the encoder {name} with spec_augment'}: true: SpecAugment "
                f"masks spans of {frames} frames in training, which need at least {need} samples; raise {key} to "
                f"{n + need - got} or more" + (f", or set {where}: false" if where else "")
            )

    # --- the loop --------------------------------------------------------------------------------------------
    def _done(self) -> bool:
        s, cfg = self.state, self.cfg
        return s.stopped_early or s.epoch >= cfg.epochs or (cfg.max_steps is not None and s.step >= cfg.max_steps)

    def _loop(self) -> None:
        r, cfg, s = self.recipe, self.cfg, self.state
        from sddkit.progress import progress_bar

        bar = progress_bar(
            total=self.total_steps,
            initial=min(s.step, self.total_steps),
            enabled=self.info.is_main and cfg.progress,
            desc="train",
        )
        try:
            if self._validation_missed():
                # the checkpoint resumed from was saved when its step's validation failed (a val file that could
                # not be read, saved by _unusable_file): validate that step now, or it stays out of metrics.jsonl,
                # TensorBoard and the choice of best/ (the run chose another best/ than an uninterrupted one)
                self._save(self._validate())
            if self.history:  # a resumed run's bar shows its last val EER from the start, as it did before
                bar.set_postfix(val_eer=_eer_shown(self.history[-1].get("val_eer")))
            while not self._done():
                batches = epoch_batches(self.train_data, r.data, seed=r.seed, epoch=s.epoch, info=self.info)
                n_batches = len(batches)  # type: ignore[arg-type]
                loader = DataLoader(
                    self.train_data,
                    batch_sampler=SkipBatches(batches, s.batch_in_epoch),
                    num_workers=r.data.num_workers,
                    pin_memory=self.device.type == "cuda",
                    # worker seeds depend on (seed, epoch, rank) only, never on the global generator
                    generator=loader_generator(r.seed, s.epoch, self.info.rank),
                )
                for batch in worker_errors(loader):
                    # domain_batch sampler: rows come in per-domain blocks that MLDG holds out whole
                    self._one_step(with_domain_blocks(batch, batches))
                    bar.update(1)
                    epoch_end = s.batch_in_epoch >= n_batches
                    if epoch_end:
                        s.epoch, s.batch_in_epoch = s.epoch + 1, 0
                    # the last step is always validated: otherwise steps after the last multiple of
                    # val_every (or a max_steps ending mid-epoch) could never be selected as best
                    validate = (
                        (cfg.val_every is not None and s.step % cfg.val_every == 0)
                        or (cfg.val_every is None and epoch_end)
                        or self._done()
                    )
                    result = self._validate() if validate else None
                    if result is not None:
                        bar.set_postfix(val_eer=_eer_shown(result.eer))
                    periodic = cfg.save_every is not None and s.step % cfg.save_every == 0
                    if validate or periodic or self._done():
                        self._save(result)
                    if self._done() or epoch_end:
                        break
                else:  # an epoch resumed at its very end yields no batch: close it here
                    if s.batch_in_epoch >= n_batches:
                        s.epoch, s.batch_in_epoch = s.epoch + 1, 0
            if s.step and self.val_data is not None and not (self.history and self.history[-1]["step"] == s.step):
                # a resume that ends the run where its checkpoint stands (a lower max_steps or epochs, less
                # patience) took no step: its last step, saved without validation (save_every), is validated too
                self._save(self._validate())
            if s.last_saved_step != s.step:
                self._save(None)
        except AudioError as exc:  # a file first read mid-run (decode_cache none or lazy): corrupt, silent, ...
            raise self._unusable_file(exc) from None
        finally:
            bar.close()

    def _validation_missed(self) -> bool:
        """Whether the step a resume starts from was due a validation that its history lacks: the loop validates
        after the step every ``val_every`` steps (without it, at each epoch's end, where ``batch_in_epoch`` is back
        to 0) and saves after it, so only a save made when that validation failed has none."""
        s, cfg = self.state, self.cfg
        if not s.step or self.val_data is None or (self.history and self.history[-1]["step"] == s.step):
            return False
        return s.step % cfg.val_every == 0 if cfg.val_every is not None else s.batch_in_epoch == 0

    def _unusable_file(self, exc: AudioError) -> AudioError:
        """The error for an audio file that failed when a training or validation batch read it (the preflight only
        looks files up, without decoding them): the utterance and the data key that lists it, what is kept, and the
        resume override that leaves it out. A one-process run first saves the steps taken since its last checkpoint
        (up to an epoch of them): the same file stops any rerun, so they were lost, where a resume that leaves it
        out goes on from them."""
        s = self.state
        if not self.info.enabled and s.step and s.last_saved_step != s.step:
            try:  # the state between two steps: what a periodic save (trainer.save_every) holds
                self._save(None)
            except (SddkitError, OSError) as failure:  # e.g. a full disk: said, the file's error is raised
                log.warning("could not save step %d before stopping: %s", s.step, failure)
        latest = ckpt.latest_checkpoint(self.ckpt_dir)
        kept = f"the last checkpoint is {latest}" if latest is not None else "no checkpoint was saved yet"
        validating, self._validating = self._validating, False  # read once: a later fit() starts out training
        found = self._listings(exc, first="data.val" if validating else "data.train")
        if not found:  # not a file of the data (an augmentation's noise file, say): its error as it is
            return exc
        key, utt, _ = found[0]
        overrides = "; ".join(override for _, _, override in found)  # a file of both: left out of both
        when = f"by the validation at step {s.step}" if validating else f"for step {s.step + 1}"
        if self.resume_takes_overrides:
            todo = f"restore or re-encode the file, or leave it out ({overrides}) and continue with {self.resume_with}"
        else:  # sdd cv refuses a fold resumed under another recipe
            todo = f"restore or re-encode the file and continue with {self.resume_with}, or leave it out and start anew"
        return type(exc)(
            f"{key} utterance {utt!r}: {exc} (read {when}: data.decode_cache none and lazy read a file when first "
            f"drawn, preload decodes every file before the first step); {kept}: {todo}"
        )

    def _listings(self, exc: AudioError, first: str) -> list[tuple[str, str, str]]:
        """(data key, utt_id, the override that leaves it out) of each of ``data.train`` and ``data.val`` that lists
        the audio file ``exc`` is about, the data key ``first`` (the one being read) first."""
        # a DataLoader worker's error comes back rebuilt from its message alone: its path is the message's start
        text = str(exc)
        named = {exc.path} if exc.path else {text[:i] for i in range(len(text)) if text.startswith(": ", i)}
        r = self.recipe
        data = [("data.train", self.train_data, r.data.train), ("data.val", self.val_data, r.data.val)]
        data.sort(key=lambda d: d[0] != first)
        found = []
        for key, dataset, specs in data:
            table = getattr(dataset, "table", None)
            if not isinstance(table, UtteranceTable):
                continue
            ids = [str(u) for p, u in zip(map(str, table.column("path")), table.column("utt_id")) if p in named]
            if ids:  # a file listed twice: every row of it
                found.append((key, ids[0], self._leaving_out(key, dataset, specs, ids)))
        return found

    def _leaving_out(self, key: str, dataset: Dataset, specs: Any, ids: list[str]) -> str:
        """How to leave the rows ``ids`` out of the data ``key`` (read from ``specs`` into ``dataset``)."""
        if dataset is (self._train_data if key == "data.train" else self._val_data):  # given, not the recipe's
            return f"its rows {ids} of the dataset given to the trainer"
        listed = as_specs(specs)
        if len(listed) != 1:  # which of the specs lists it is not known here
            return f"its {key} spec's exclude: {{utt_id: [{', '.join(map(repr, ids))}]}}"
        spec_key = key if isinstance(specs, ProtocolSpec) else f"{key}[0]"
        # an override replaces the list: the ids it excludes already, then these
        before = listed[0].exclude.get("utt_id", [])
        ids = ([before] if isinstance(before, str) else [str(v) for v in before]) + ids
        return f"'{spec_key}.exclude.utt_id={json.dumps(ids)}'"  # YAML reads JSON, a shell takes it

    def _one_step(self, batch: dict[str, torch.Tensor]) -> None:
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items() if torch.is_tensor(v)}
        self.module.train()
        try:
            result: StepResult = self.strategy.step(batch, self.ctx)
        except FloatingPointError as exc:  # the strategy checks the gradient before the optimiser moves
            raise self._diverged(str(exc)) from None
        if not torch.isfinite(result.loss):
            raise self._diverged(f"non-finite training loss {float(result.loss)}")
        if self.ema is not None:  # a strategy's step is one optimiser step, whatever passes it takes
            self.ema.update()
        self._step_lr = self.optimizer.param_groups[0]["lr"]  # the lr this step used, before the schedule moves on
        self.scheduler.step()
        self.state.step += 1
        self.state.batch_in_epoch += 1
        for k, v in result.metrics.items():
            self._window.setdefault(k, []).append(v.detach().float().reshape(()))
        if self.state.step % self.cfg.log_every == 0:
            self._flush_log()

    def _diverged(self, what: str, step: int | None = None) -> TrainingDivergedError:
        """The error for a step that met NaN/inf (default: the step being taken): which step, what is kept, what
        to try."""
        latest = ckpt.latest_checkpoint(self.ckpt_dir)
        # without a checkpoint there is nothing to resume from (a --resume would start afresh, as a plain rerun does)
        kept = (
            f"the last checkpoint is {latest} (resume from it"
            if latest is not None
            else "no checkpoint was saved yet (train again"
        )
        # the key that sets the lr: the cyclic schedule never reads optimizer.lr
        lr_key = "schedule.max_lr" if self.recipe.schedule.name == "cyclic" else "optimizer.lr"
        return TrainingDivergedError(
            f"step {self.state.step + 1 if step is None else step}: {what}; {kept} with a lower {lr_key}, a "
            "trainer.grad_clip, or another seed)"
        )

    def _flush_log(self) -> None:
        """Log each ``train/`` tag's mean over the steps since the last log; under torchrun over every process's
        steps (each rank's batch of a step has ``data.batch_size`` items, so each counts alike), the loss whose
        gradients DDP averaged: rank 0's alone was a noisier curve than, and not, the one optimised, and a tag
        only another rank returned was never logged. A collective: every rank calls it at the same steps
        (``log_every``, each save, the end), whatever its tags, and only there (no collective in other steps)."""
        window, self._window = self._window, {}
        sums = {k: (float(torch.stack(values).float().sum()), float(len(values))) for k, values in window.items()}
        means = mean_over_ranks(sums) if self.info.enabled else {k: t / n for k, (t, n) in sums.items()}
        if self.info.is_main and self._writer is not None and means:
            self._log_scalars({**{f"train/{k}": v for k, v in means.items()}, "train/lr": self._step_lr})

    def _log_scalars(self, scalars: dict[str, float]) -> None:
        """Write ``{tag: value}`` at this step to the TensorBoard log (the main process, its writer open).

        Its events are written by a thread of their own, whose failure (a full disk: the first write to meet it is
        usually this log's, written far more often than checkpoints) the next write raises as a bare OSError."""
        try:
            for tag, value in scalars.items():
                self._writer.add_scalar(tag, value, self.state.step)
        except OSError as exc:  # the resume purges the events after its checkpoint's step
            raise self._write_failed(f"the TensorBoard log under {self.out_dir / 'tb'}", exc) from None

    # --- validation and model selection --------------------------------------------------------------------
    def _evaluate(self, dataset: Dataset, collect_stats: bool = False) -> EvalResult:
        data = self.recipe.data
        broadcast_buffers(self.module)  # every rank scores with the statistics rank 0 saves (a collective)
        try:
            return evaluate(
                self.module,
                dataset,
                batch_size=data.val_batch_size or data.batch_size,
                device=self.device,
                loss_fn=self.loss_fn,
                info=self.info,
                autocast=self._autocast,
                collect_stats=collect_stats,
                num_workers=data.num_workers,
            )
        except FloatingPointError as exc:  # the scores are gathered: every rank raises alike
            raise self._diverged(f"evaluation: {exc}", step=self.state.step) from None

    def _validate(self) -> EvalResult | None:
        if self.val_data is None:
            return None
        s, cfg = self.state, self.cfg
        # a file that fails is said to be read by the validation (left set when it raises: the loop's handler reads it)
        self._validating = True
        with self._measured_weights():
            result = self._evaluate(self.val_data)
        self._validating = False
        if result.eer is None:
            # injected val data (a recipe's is checked when read): without both classes there is no EER, and
            # the run would go on without model selection or early stopping, exporting its last weights as best/
            n_bonafide = int((result.labels == 1).sum())
            raise ConfigError(
                f"the validation data holds {n_bonafide} bona fide and {result.n - n_bonafide} spoof utterances: "
                "model selection by val EER needs both classes"
            )
        record = {"step": s.step, "epoch": s.epoch, "val_eer": result.eer, "val_loss": result.loss, "n": result.n}
        self.history.append(record)
        if result.eer is not None:
            if s.best_eer is None or result.eer < s.best_eer:
                s.best_eer, s.best_step, s.bad_validations = result.eer, s.step, 0
            else:
                s.bad_validations += 1
                if cfg.patience is not None and s.bad_validations >= cfg.patience:
                    s.stopped_early = True
                    log.info("early stopping at step %d: no better val EER for %d validations", s.step, cfg.patience)
        if self.info.is_main:
            if self._writer is not None:
                self._log_scalars(
                    {**({"val/eer": result.eer} if result.eer is not None else {}), "val/loss": result.loss}
                )
            try:
                with open(self.out_dir / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(record) + "\n")
            except OSError as exc:  # a full disk: the resume rewrites metrics.jsonl from its checkpoint
                raise self._write_failed(f"{self.out_dir / 'metrics.jsonl'}", exc) from None
        return result

    def _model_state(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.module.state_dict().items() if k not in self._reloadable}

    @contextlib.contextmanager
    def _measured_weights(self) -> Iterator[None]:
        """The model validated, ranked and exported in place for a block: with trainer.ema_decay the moving average
        of the weights with their re-estimated batch-norm statistics (the raw weights and statistics come back
        after it, bit for bit), else the model as trained."""
        if self.ema is None:
            yield
            return
        stats, estimate = self._averaged_bn(), self.bn_estimate
        if stats is None or estimate is None:
            with self.ema.swapped_in():
                yield
            return
        # the raw statistics every process gets back are rank 0's, as validation left them without the average (its
        # evaluation broadcasts the buffers); a collective: every process validates
        broadcast_buffers(self.module)
        with self.ema.swapped_in(), estimate.loaded(stats):
            yield

    def _averaged_bn(self) -> dict[str, torch.Tensor] | None:
        """The re-estimated batch-norm statistics of the averaged weights at this step (estimated once a step,
        on every process alike: validation and the checkpoint of a step share them); None without such norms."""
        if self.bn_estimate is None or self.ema is None:
            return None
        if self._estimated_bn is None or self._estimated_bn[0] != self.state.step:
            with self.ema.swapped_in():
                self._estimated_bn = (self.state.step, self.bn_estimate.estimate())
        return self._estimated_bn[1]

    def _ema_bn_batches(self) -> int:
        """How many batches the averaged model's batch-norm statistics are re-estimated on (0: no such norms)."""
        return len(self.bn_estimate.batches) if self.bn_estimate is not None else 0

    def _averaged_state(self, raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The state of the averaged model (trainer.ema_decay) beside the raw model's state ``raw``: the moving
        average of the weights, with their re-estimated batch-norm statistics."""
        state = self.ema.model_state(raw)  # type: ignore[union-attr]
        stats = self._averaged_bn() or {}
        return {k: stats.get(k, v) for k, v in state.items()}

    @functools.cached_property
    def _session_code(self) -> dict[str, Any]:
        """``{"git", "versions"}`` of the code this session runs: what run.json records for the session, what every
        checkpoint it saves records, and so what best/ reports of the checkpoint it is made from (a resume may run
        other code than the session that trained those weights)."""
        return {"git": git_commit(), "versions": package_versions()}

    @functools.cached_property
    def _frozen_digest(self) -> str | None:
        """:func:`weights_digest` of the frozen pretrained weights that checkpoints leave out (read from the
        pretrained folder when the model is built); None when there are none. Computed once: a run never changes
        them."""
        frozen = {k: v for k, v in self.module.state_dict().items() if k in self._reloadable}
        return weights_digest(frozen) if frozen else None

    def _save(self, result: EvalResult | None) -> None:
        s = self.state
        name = f"step-{s.step:08d}"
        if result is not None and result.eer is not None:
            entries = [e for e in s.ranked if e["name"] != name] + [{"name": name, "step": s.step, "eer": result.eer}]
            entries.sort(key=lambda e: (e["eer"], e["step"]))
            s.ranked = entries[: self.cfg.keep_top_k]
        s.last_saved_step = s.step
        self._flush_log()
        # every rank's own generators (its dropout masks) and strategy state (MLDG's split generator, which
        # draws as many numbers as this rank's batches ask for): restoring rank 0's everywhere would make the
        # ranks draw the same numbers after a resume (a collective: every rank calls _save)
        per_rank = (
            all_gather_objects({"rng": ckpt.capture_rng_state(), "strategy": self.strategy.state_dict()})
            if self.info.enabled
            else None
        )
        rng = [p["rng"] for p in per_rank] if per_rank is not None else None
        self._averaged_bn()  # on every process alike (forward passes through its own model), before rank 0 reads it
        if self.info.is_main:
            raw = self._model_state()
            state = {
                "recipe": to_dict(self.recipe),
                "model_config": self.model_config,
                "architecture": self.architecture,
                # the model measured: with trainer.ema_decay the moving average, which best/, final/ and the average
                # of the top k read from here; the raw weights, which training goes on from, under raw_model
                "model": self._averaged_state(raw) if self.ema is not None else raw,
                **({"raw_model": raw} if self.ema is not None else {}),
                "pretrained_digest": self._frozen_digest,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "strategy": self.strategy.state_dict(),
                "strategy_by_rank": [p["strategy"] for p in per_rank] if per_rank is not None else None,
                "rng": rng[0] if rng is not None else ckpt.capture_rng_state(),
                "rng_by_rank": rng,
                "trainer": dataclasses.asdict(s),
                # what best/ reports of this checkpoint's averaged model when a resume changed the count since
                **({"ema_bn_batches": self._ema_bn_batches()} if self.ema is not None else {}),
                "history": self.history,
                "world_size": self.info.world_size,
                # the code the weights were trained under up to here: best/ made from this checkpoint by a later
                # session (a resume under a newer commit) reports it, as run.json's session that saved it does
                **self._session_code,
            }
            try:
                ckpt.save_checkpoint(self.ckpt_dir, name, state)
            except (OSError, SafetensorError) as exc:  # a full disk, a folder gone read-only
                raise self._write_failed(f"checkpoint {name} under {self.ckpt_dir}", exc) from None
            ckpt.prune_checkpoints(self.ckpt_dir, {e["name"] for e in s.ranked})
        barrier()

    def _write_failed(self, what: str, exc: Exception) -> CheckpointError:
        """The error of a write the system refused (a full disk, a folder gone read-only): what is kept, what to do."""
        latest = ckpt.latest_checkpoint(self.ckpt_dir)
        kept = f"the last checkpoint is {latest}" if latest is not None else "no checkpoint was saved yet"
        return CheckpointError(
            f"cannot save {what} ({exc}); {kept}: free the space or fix the folder, then continue with "
            f"{self.resume_with}"
        )

    def _load_latest(self) -> str | None:
        path = ckpt.latest_checkpoint(self.ckpt_dir)
        if path is None:
            log.info("no checkpoint under %s: starting from scratch", self.ckpt_dir)
            return None
        try:
            state = ckpt.load_checkpoint(path)
            ckpt.check_resumable(path, state)  # a state.json edited by hand: one line, not a KeyError
        except CheckpointError as exc:  # damaged since it was written (a truncated copy, a failing disk)
            raise ckpt.unusable_latest(self.ckpt_dir, self.out_dir, exc) from None
        recorded_recipe = state.get("recipe", {})
        changes = recipe_changes(recorded_recipe, to_dict(self.recipe), ignore=RESUME_SETTINGS)
        raw = self._raw_weights(path, state)
        check_frozen_expert_dirs(self._frozen_expert_dirs, path, raw, recorded_recipe, changes)
        try:
            load_state_checked(self.module, raw, partial=bool(self._reloadable), where=str(path))
        except CheckpointError as exc:  # e.g. another backend width passed as an override
            raise _changed_model(exc, changes) from None
        recorded_frozen = state.get("pretrained_digest")  # absent from checkpoints written before it was recorded
        if recorded_frozen is not None and recorded_frozen != self._frozen_digest:
            # the checkpoint holds the weights trained over those frozen ones, which come from the folder again: a
            # folder replaced since (another encoder, another revision under the same path) went on under other
            # features without a word, and best/ and final/ recorded the new folder's digest as the trained-on one
            folders = ", ".join(pretrained_folders(self.model_config)) or "the encoder's pretrained folder"
            changed = f"; the recipe changed since ({'; '.join(changes)})" if changes else ""
            raise CheckpointError(
                f"{path}: the frozen pretrained weights read from {folders} are not those this run was trained over "
                f"(digest {str(self._frozen_digest)[:12]}, recorded {str(recorded_frozen)[:12]}){changed}: restore "
                "that folder as it was, or train over the new weights in another trainer.out_dir"
            )
        self._check_folder_normalize(path, state, recorded_recipe)
        self._check_folder_settings(path, state, recorded_recipe)
        if changes and self.info.is_main:  # (every rank reads the same checkpoint: said once, not once a rank)
            # a resume continues the checkpoint's weights, optimiser moments and position under the new values
            log.warning(
                "resuming %s with a changed recipe (%s): the new values apply from here", path, "; ".join(changes)
            )
        recorded = (recorded_recipe.get("strategy") or {}).get("name")
        if recorded_recipe.get("seed", self.recipe.seed) != self.recipe.seed:
            # another seed (what a diverged run is told to try): other random streams from here on
            step = int((state.get("trainer") or {}).get("step", 0))
            seed_everything(rank_seed(self.recipe.seed, self.info.rank, restart_step=step))
        else:
            self._restore_rng(state)
        if _strategy_seed(recorded_recipe, self.recipe.seed) == _strategy_seed(to_dict(self.recipe), self.recipe.seed):
            self._load_strategy(path, recorded, self._rank_strategy_state(state))
        # else the strategy's state as built from its new seed (strategy.seed, else the recipe's): a changed
        # strategy.seed alone was overwritten by the saved split generator, and the warning said it applied
        try:
            self.state = TrainState(**state["trainer"])
        except TypeError as exc:
            raise CheckpointError(f"{path}: incompatible trainer state: {exc}") from None
        # recorded, unlike the warning, with more steps or epochs too (they replan the schedule): the checkpoints
        # saved from here on, best/ and final/ say their weights were trained partly under the earlier values
        recorded_changes = recipe_changes(recorded_recipe, to_dict(self.recipe))
        if recorded_changes:
            self.state.resumes.append({"step": self.state.step, "checkpoint": path.name, "changes": recorded_changes})
        complete = set(ckpt.complete_checkpoints(self.ckpt_dir))
        gone = [e["name"] for e in self.state.ranked if e["name"] not in complete]
        if gone:
            # deleted (by hand) since: best/ and the average of final/ would fail to load them at the end
            # of the run, and every later --resume too; they are chosen among the checkpoints that are left
            if self.info.is_main:  # (every rank finds the same checkpoints: said once)
                log.warning(
                    "the top-k checkpoint(s) %s are no longer complete under %s: best/ and final/ are chosen among "
                    "the others (a best/ exported from one of them is moved aside to best.<checkpoint>/ at the end, "
                    "not written over)",
                    ", ".join(gone),
                    self.ckpt_dir,
                )
            self.state.ranked = [e for e in self.state.ranked if e["name"] in complete]
            self._gone_top_k = gone
        self._carry_epoch_position(recorded_recipe, int(state.get("world_size") or 1))
        self._replan()
        try:
            self._load_optimization(state["optimizer"], state["scheduler"])
        except CheckpointError as exc:  # other trainable parameters (e.g. another freezing or LoRA setting)
            raise _changed_model(CheckpointError(f"{path}: {exc}"), changes) from None
        # early stopping under today's trainer.patience: a resume with more patience trains on
        patience = self.cfg.patience
        self.state.stopped_early = patience is not None and self.state.bad_validations >= patience
        self.history = list(state.get("history", []))
        log.info("resumed from %s (step %d, epoch %d)", path, self.state.step, self.state.epoch)
        return path.name

    def _check_folder_normalize(self, path: Path, state: dict[str, Any], recorded_recipe: dict[str, Any]) -> None:
        """Refuse a resume whose encoder's pretrained folder now decides another waveform normalisation than it did
        when the run started (``normalize: null``: ``do_normalize`` of the folder's feature-extractor file, else its
        extractor type). The folder was read again at every resume: one whose preprocessor_config.json was edited,
        replaced or left out of a copy since went on training the checkpoint's weights on other input, without a
        word (the pretrained digest checks the weights only). A normalize the recipe sets (then or now) is the
        recipe's own value: a changed one is a recipe change, warned of as such."""
        from sddkit.frontends.encoders import folder_normalize_entries

        changed = self._folder_changes(
            folder_normalize_entries, state, recorded_recipe, lambda value: isinstance(value, bool)
        )
        if not changed:
            return
        key, folder, was, now = changed[0]
        value = str(was).lower()
        raise CheckpointError(
            f"{path}: this run was trained with the waveform normalisation its encoder's pretrained folder "
            f"{folder} decided when it started ({key}: null gave {value}), and that folder now decides "
            f"{str(now).lower()} (do_normalize of its preprocessor_config.json or processor_config.json, else its "
            f"feature extractor type: the file was edited, replaced or left out since): restore that file as it "
            f"was, or {self._keep_hint('value', f'{key}={value}')}train with the folder's new value in another "
            "trainer.out_dir"
        )

    def _check_folder_settings(self, path: Path, state: dict[str, Any], recorded_recipe: dict[str, Any]) -> None:
        """Refuse a resume whose encoder's pretrained folder now decides another value of a setting the recipe leaves
        to it (a dropout probability, SpecAugment's ``mask_time_prob`` etc. with ``spec_augment: true``, the layer
        norms' ``layer_norm_eps``: :func:`~sddkit.frontends.encoders.recorded_settings_spec`) than when the run
        started, as :meth:`_check_folder_normalize` does: a config.json edited or replaced since (its weights, and so
        the pretrained digest, unchanged) went on training the checkpoint's weights under another computation, without
        a word. A value the recipe sets (then or now) is the recipe's own: a changed one is a recipe change."""
        from sddkit.frontends.encoders import folder_setting_entries

        changed = self._folder_changes(folder_setting_entries, state, recorded_recipe, lambda value: value is not None)
        if not changed:
            return
        folders = ", ".join(dict.fromkeys(folder for _, folder, _, _ in changed))
        values = "; ".join(f"{key}: {was!r} then, {now!r} now" for key, _, was, now in changed)
        keep = " ".join(f"{key}={was!r}" for key, _, was, _ in changed)
        raise CheckpointError(
            f"{path}: the config.json of this run's encoder pretrained folder {folders} now decides other settings "
            f"than when the run started ({values}; the file was edited or replaced since): restore that file as it "
            f"was, or {self._keep_hint('values', keep)}train with the folder's new values in another "
            "trainer.out_dir"
        )

    def _folder_changes(
        self,
        entries: Callable[[Any], dict[str, tuple[str, Any]]],
        state: dict[str, Any],
        recorded_recipe: dict[str, Any],
        decided: Callable[[Any], bool],
    ) -> list[tuple[str, str, Any, Any]]:
        """``(key, folder, then, now)`` of each encoder setting (``entries``: :func:`~sddkit.frontends.encoders.
        folder_normalize_entries` or ``folder_setting_entries``) that the checkpoint's model config recorded as its
        pretrained folder decided it (``decided(value)``) and that the folder decides otherwise now, where the recipe
        sets it neither then nor now (a value of the recipe's own is a recipe change, warned of as such). None for
        init_from and mixtures: their model directories record the values; none of checkpoints of older sddkit."""
        if self.recipe.model is None:
            return []
        recorded = entries(state.get("model_config"))
        written = [entries(recorded_recipe.get("model")), entries(to_dict(self.recipe.model))]
        changed = []
        for key, (folder, now) in entries(self.model_config).items():
            was = recorded.get(key, ("", None))[1]
            if not (decided(was) and decided(now)) or was == now:
                continue
            if any(given.get(key, ("", None))[1] is not None for given in written):
                continue
            changed.append((key, folder, was, now))
        return changed

    def _keep_hint(self, noun: str, overrides: str) -> str:
        """``keep the run's <noun> (<overrides> with <resume_with>), or ``, where the resume takes overrides; '' under
        sdd cv, which refuses a fold rerun under another recipe (the run's values cannot be given on resuming)."""
        if not self.resume_takes_overrides:
            return ""
        return f"keep the run's {noun} ({overrides} with {self.resume_with}), or "

    def _raw_weights(self, path: Path, state: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The weights training goes on from in checkpoint ``state``; keeps its moving average for _setup. A resume
        cannot switch trainer.ema_decay on or off: the checkpoints ranked so far hold one kind of model, and the
        average needs the steps before."""
        saved = state.get("raw_model")
        decay = self.cfg.ema_decay
        if (saved is not None) == (decay is not None):
            if saved is not None:
                self._resumed_ema = (str(path), state["model"])
                return saved
            return state["model"]
        was = ((state.get("recipe") or {}).get("trainer") or {}).get("ema_decay")
        if decay is not None:
            raise CheckpointError(
                f"{path} was saved without trainer.ema_decay (no moving average of the weights to go on with), the "
                f"recipe now sets {decay}: resume with trainer.ema_decay=null, or train with it in another "
                "trainer.out_dir (init_from= starts from an exported model directory)"
            )
        raise CheckpointError(
            f"{path} was saved with trainer.ema_decay={was}: its checkpoints hold the moving average of the weights, "
            f"the recipe now sets none; resume with trainer.ema_decay={was}, or train without it in another "
            "trainer.out_dir"
        )

    def _check_ranks_agree(self) -> None:
        """Refuse processes that would train differently (a collective: every rank calls it).

        An override given to one rank only, or another copy of a protocol on another node, changes the steps
        per epoch or when to validate, and the ranks then wait for each other's collectives forever, silently.
        """
        mine = {
            "recipe": to_dict(self.recipe),
            "train": len(self.train_data),  # type: ignore[arg-type]
            "val": len(self.val_data) if self.val_data is not None else 0,  # type: ignore[arg-type]
            "steps_per_epoch": self.steps_per_epoch,
        }
        every = all_gather_objects(mine)
        problems = []
        for rank, other in enumerate(every[1:], start=1):
            changed = recipe_changes(every[0]["recipe"], other["recipe"])
            sizes = [
                f"{k}: {every[0][k]} -> {other[k]}"
                for k in ("train", "val", "steps_per_epoch")
                if other[k] != every[0][k]
            ]
            if changed or sizes:
                problems.append(f"rank {rank} differs from rank 0 ({'; '.join(changed + sizes)})")
        if problems:
            raise ConfigError(
                f"the {len(every)} processes would not train alike: {'; '.join(problems[:3])}; start every rank with "
                "the same recipe, overrides and data"
            )

    def _carry_epoch_position(self, recorded_recipe: dict[str, Any], recorded_world: int) -> None:
        """Express a mid-epoch position saved under another ``data.batch_size`` or number of processes in
        batches of today's size and process count.

        The position counts each rank's batches; replayed as batches of another size, or on another number of
        ranks, it would repeat items of the epoch or skip some never seen. The ranks' batches together take the
        epoch's order from its start (rank r takes items r, r + world, ...), and the random and balanced samplers
        give that order whatever the batch size and rank count, so the epoch goes on after the items already
        seen (rounded up to a whole step: fewer than one step of the epoch may be skipped, none repeated);
        ``domain_batch`` draws its blocks per step, and the same count keeps the share of the epoch done.
        """
        old = (recorded_recipe.get("data") or {}).get("batch_size")
        new, world = self.recipe.data.batch_size, self.info.world_size
        if not self.state.batch_in_epoch or not isinstance(old, int) or (old, recorded_world) == (new, world):
            return
        seen = self.state.batch_in_epoch * old * recorded_world
        batches = self.state.batch_in_epoch
        self.state.batch_in_epoch = -(-seen // (new * world))
        if not self.info.is_main:  # every rank carries the position alike: said once, not once a rank
            return
        log.warning(
            "epoch %d was saved after %d batches of %d on %d process(es): it goes on after those %d items "
            "(batch %d of %d on each of %d)",
            self.state.epoch,
            batches,
            old,
            recorded_world,
            seen,
            self.state.batch_in_epoch,
            new,
            world,
        )

    def _replan(self) -> None:
        """Plan the schedule over the steps taken and the steps left (at today's steps per epoch).

        ``epochs`` x today's steps per epoch counts the steps already taken at today's batch size and process
        count: after a resume under another ``data.batch_size`` or number of processes it would end the
        schedule too early (the rest of the run at the floor) or too late. Unchanged, both counts agree."""
        s, cfg = self.state, self.cfg
        total = s.step + max(0, (cfg.epochs - s.epoch) * self.steps_per_epoch - s.batch_in_epoch)
        total = min(total, cfg.max_steps) if cfg.max_steps else total
        # built again even when unchanged: the set-up's schedule did not check the warm-up against this plan
        self.total_steps = total
        self.scheduler = build_scheduler(self.optimizer, self.recipe.schedule, total, check=self.info.is_main)

    def _load_strategy(self, path: Path, recorded: str | None, saved: dict[str, Any]) -> None:
        if recorded is not None and recorded != self.recipe.strategy.name:
            # another strategy's state (e.g. none for ERM) cannot seed this one's: it starts afresh
            if not self.info.is_main:  # (said once, not once a rank)
                return
            log.warning(
                "%s was written with strategy %r, the recipe now says %r: that strategy's state starts afresh",
                path,
                recorded,
                self.recipe.strategy.name,
            )
            return
        self.strategy.load_state_dict(saved)

    def _load_optimization(self, optimizer: dict[str, Any], scheduler: dict[str, Any]) -> None:
        """The checkpoint's optimiser moments and schedule position, under the recipe's hyperparameters.

        The saved param_groups and the scheduler's base_lrs hold the lr, weight decay and schedule the run
        started with: loaded as they are, a resume with a lower optimizer.lr (what a diverged run is told to
        try) would train on with the old one. Unchanged values come back exactly (the schedules are closed-form).
        """
        hyper = [{k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups]
        fresh = self.scheduler.state_dict()
        ckpt.load_optimizer_state(self.optimizer, optimizer)
        for group, values in zip(self.optimizer.param_groups, hyper):
            group.update(values)
        position = {k: scheduler[k] for k in ("last_epoch", "_step_count") if k in scheduler}
        self.scheduler.load_state_dict({**fresh, **position})
        with warnings.catch_warnings():  # get_lr() outside step() warns; here it is the lr at the restored step
            warnings.simplefilter("ignore", UserWarning)
            lrs = [float(lr) for lr in self.scheduler.get_lr()]
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self.scheduler._last_lr = lrs  # type: ignore[attr-defined]

    def _rank_strategy_state(self, state: dict[str, Any]) -> dict[str, Any]:
        """This rank's strategy state of a checkpoint: its own when saved by as many processes, else rank 0's
        (written by another number of processes, or before every rank's state was saved)."""
        by_rank = state.get("strategy_by_rank")
        if by_rank is not None and len(by_rank) == self.info.world_size:
            return by_rank[self.info.rank]
        return state["strategy"]

    def _restore_rng(self, state: dict[str, Any]) -> None:
        """This rank's generator states of a checkpoint (rank 0's in a single process)."""
        rank = self.info.rank
        by_rank = state.get("rng_by_rank")
        if rank == 0 or (by_rank is not None and len(by_rank) == self.info.world_size):
            ckpt.restore_rng_state(by_rank[rank] if by_rank is not None and rank > 0 else state["rng"])
            return
        # written by another number of processes (or before every rank's states were saved): a stream of this
        # rank's own, distinct from rank 0's and from a fresh run's
        step = int((state.get("trainer") or {}).get("step", 0))
        seed_everything(rank_seed(self.recipe.seed, rank, restart_step=step))

    # --- the end ----------------------------------------------------------------------------------------------
    def _load_weights(self, tensors: dict[str, torch.Tensor], where: str) -> None:
        load_state_checked(self.module, tensors, partial=bool(self._reloadable), where=where)

    def _ranked_weights(self, name: str) -> dict[str, torch.Tensor]:
        """The model weights of top-k checkpoint ``name``, which best/ or final/ is made from."""
        try:
            return ckpt.load_checkpoint_tensors(self.ckpt_dir / name, "model/")
        except CheckpointError as exc:
            latest = ckpt.latest_checkpoint(self.ckpt_dir)
            if latest is not None and latest.name == name:  # the resume goes on from it: no way around it here
                raise
            # damaged since its save: every resume of the run failed here again at its end, without a way on
            raise CheckpointError(
                f"{exc}; best/ and final/ are made from it (one of the top trainer.keep_top_k): move "
                f"{self.ckpt_dir / name} away and continue with {self.resume_with}, and they are chosen among the "
                "checkpoints left"
            ) from None

    def _averaged_weights(self, names: list[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Mean of the floating-point tensors of checkpoints ``names``; integer buffers from the first (best).

        A LoRA layer's A and B, and a MoLEx expert's, are not averaged apart (the product of their means is not
        the mean of the updates B A): they are the rank-r truncation of the mean update
        (:func:`average_lora_states`, :func:`average_molex_states`). Also returns what to record of that in the
        metadata (empty without LoRA layers or MoLEx experts)."""
        states = [self._ranked_weights(n) for n in names]
        for name, state in zip(names[1:], states[1:]):
            _check_same_weights(names[0], states[0], name, state)
        lora, lost = average_lora_states(self.module, states)
        experts, experts_lost = average_molex_states(self.module, states)
        lora.update(experts)
        lost = max(lost, experts_lost)
        out = {}
        for key, first in states[0].items():
            if key in lora:
                out[key] = lora[key]
            elif first.is_floating_point():
                out[key] = (torch.stack([st[key].double() for st in states]).mean(dim=0)).to(first.dtype)
            else:
                out[key] = first
        if not lora:
            return out, {}
        if lost > 0.05:
            log.warning(
                "averaging %d checkpoints: a LoRA layer's or MoLEx expert's mean update B A is not of rank r, and its "
                "rank-r truncation in final/ loses %.1f %% of it (best/ holds the best checkpoint as trained)",
                len(names),
                100 * lost,
            )
        return out, {"lora_average": "rank-r truncation of the mean update B A", "lora_average_loss": lost}

    def _recipe_changes_of(self, names: Sequence[str], recipe: dict[str, Any]) -> dict[str, Any]:
        """``{"checkpoint_recipe_changes": {name: changes}}`` for the averaged checkpoints ``names`` saved under
        another recipe than ``recipe`` (on the other side of a resume), each change ``key: its value -> recipe's``;
        empty when every one was saved under ``recipe``."""
        changed = {}
        for name in names:
            saved = ckpt.load_checkpoint_record(self.ckpt_dir / name, ("recipe",)).get("recipe")
            changes = recipe_changes(saved, recipe) if isinstance(saved, dict) else []
            if changes:
                changed[name] = changes
        return {"checkpoint_recipe_changes": changed} if changed else {}

    @contextlib.contextmanager
    def _export_flags(self) -> Iterator[None]:
        """requires_grad = "not reloadable" while exporting, so ``trainable_only`` keeps exactly that."""
        saved = {n: p.requires_grad for n, p in self.module.named_parameters()}
        try:
            for n, p in self.module.named_parameters():
                p.requires_grad_(n not in self._reloadable)
            yield
        finally:
            for n, p in self.module.named_parameters():
                p.requires_grad_(saved[n])

    def _export(
        self, name: str, metadata: dict[str, Any], *, checkpoint: Path | None = None, averaged: Sequence[str] = ()
    ) -> Path | None:
        """Export the model as it stands to ``out_dir/name``. Its weights are those of ``checkpoint`` when given (its
        record says the recipe and resumes they were trained under; a resume may have changed the recipe since),
        else of the run's last step, or the average of the checkpoints ``averaged``."""
        if not self.info.is_main:
            return None
        if self.model_config is None:
            log.warning("no model config known: not exporting %s/", name)
            return None
        commit, versions = self._session_code["git"], self._session_code["versions"]
        recipe, resumes = to_dict(self.recipe), self.state.resumes
        model_config = self.model_config
        ema = {"ema_decay": self.ema.decay, "ema_bn_batches": self._ema_bn_batches()} if self.ema is not None else {}
        if checkpoint is not None:
            record = ckpt.load_checkpoint_record(
                checkpoint, ("recipe", "trainer", "ema_bn_batches", "model_config", "git", "versions")
            )
            # the code its weights were trained under (the session that saved it; absent from checkpoints of an older
            # sddkit): a resume under another commit re-exported best/ naming the resume's, which never trained them
            if isinstance(record.get("versions"), dict):
                commit, versions = record.get("git"), record["versions"]
            if isinstance(record.get("model_config"), dict):
                # the model its weights were trained and validated as: a resume may have changed a setting that
                # leaves the weights' shapes alone (model.frontend.f_min), and best/ under today's config scored
                # otherwise than its val_eer says (its train_recipe gave the old value)
                model_config = with_pretrained_of(record["model_config"], model_config)
                if self.architecture == "mixture" and isinstance(self.model_config, dict):
                    # a mixture's expert_names label its reports (sdd eval's gate tables), not its weights: a resume
                    # given mixture.expert_names renamed final/'s experts while a best/ saved before it kept the
                    # old names, so the two exports of one run named the same experts differently
                    names = self.model_config.get("expert_names")
                    model_config = {**model_config, **({"expert_names": names} if names else {})}
            if isinstance(record.get("recipe"), dict):  # a checkpoint of an older sddkit may lack what follows
                recipe = record["recipe"]
                resumes = (record.get("trainer") or {}).get("resumes") or []
                if ema:
                    ema["ema_decay"] = (recipe.get("trainer") or {}).get("ema_decay", ema["ema_decay"])
                    ema["ema_bn_batches"] = record.get("ema_bn_batches", ema["ema_bn_batches"])
        inference = {"sample_rate": 16000, "window_samples": export_window_samples(recipe, self.recipe)}
        meta = {
            "seed": recipe.get("seed", self.recipe.seed),
            "git_commit": commit["commit"] if isinstance(commit, dict) else None,
            "git_dirty": commit["dirty"] if isinstance(commit, dict) else None,  # the commit alone hides edits
            "versions": versions,  # the model directory travels without run.json
            "steps": self.state.step,
            # the weights are the moving average of those trained (trainer.ema_decay), not the last ones, with
            # batch-norm statistics re-estimated on that many batches (0: none to re-estimate)
            **ema,
            **metadata,
            **self._recipe_changes_of(averaged, recipe),
            # the recipe in force when these weights were saved, and the resumes under other values before it
            "train_recipe": recipe,
            **({"resumes": resumes} if resumes else {}),
        }
        if self.recipe.mixture is not None and self.recipe.mixture.expert_dirs:
            # the config holds the experts' resolved configs: where they came from, as save_model_dir records it
            # for a mixture built by hand
            meta["expert_dirs"] = [str(d) for d in self.recipe.mixture.expert_dirs]
        try:
            with self._export_flags():
                self._keep_calibration(self.out_dir / name, inference, meta)
                return save_model_dir(
                    self.out_dir / name,
                    self.module,
                    model_config=model_config,
                    architecture=self.architecture,
                    trainable_only=bool(self._reloadable),
                    inference=inference,
                    metadata=meta,
                )
        except OSError as exc:  # a resume of the finished run exports again from its checkpoints
            raise self._write_failed(f"the model directory {self.out_dir / name}", exc) from None

    def _keep_calibration(self, directory: Path, inference: dict[str, Any], meta: dict[str, Any]) -> None:
        """:func:`~sddkit.training.exports.keep_calibration` of ``directory`` for the model exported now."""
        keep_calibration(
            directory, lambda: weights_digest(state_to_save(self.module, bool(self._reloadable))), inference, meta
        )

    def _finish(self) -> TrainResult:
        s, cfg = self.state, self.cfg
        self._flush_log()
        barrier()
        if self.ema is not None:  # training is over: the model measured and exported from here is the average
            averaged_bn, estimate = self._averaged_bn(), self.bn_estimate
            self.ema.copy_to_model()
            if averaged_bn is not None and estimate is not None:
                estimate.load(averaged_bn)
        # final/: the average of the top-k checkpoints, or the last weights (their moving average: trainer.ema_decay)
        k = min(cfg.average_top_k, len(s.ranked))
        if k >= 2:
            names = [e["name"] for e in s.ranked[:k]]
            averaged, lora_note = self._averaged_weights(names)
            self._load_weights(averaged, f"the average of {', '.join(names)} in {self.ckpt_dir}")
            selection: dict[str, Any] = {
                "selection": f"average of the top {k} checkpoints",
                "checkpoints": names,
                **lora_note,
                **self._reestimate_average_bn(),
            }
        else:
            names, selection = [], {"selection": "last step"}
        if 2 <= cfg.average_top_k and k < cfg.average_top_k:
            selection.update(self._fewer_than_average_top_k(k))
        final_eval = self._evaluate(self.val_data) if self.val_data is not None else None
        final_eer = final_eval.eer if final_eval is not None else None
        final_dir = self._export("final", {**selection, "val_eer": final_eer}, averaged=names)
        # best/: the checkpoint with the lowest validation EER (the last weights without validation)
        where, chosen = None, None
        if s.ranked:
            best = s.ranked[0]
            # what fit() returns and `sdd train` prints as the best val EER is best/'s: after a resume that found the
            # best checkpoint deleted, the state's best_eer/best_step are of weights no longer exported anywhere
            chosen = (best["eer"], best["step"])
            where = self.ckpt_dir / best["name"]
            self._load_weights(self._ranked_weights(best["name"]), str(where))
            best_meta = {"selection": "lowest val EER", "checkpoint": best["name"], "val_eer": best["eer"]}
            # steps: what these weights were trained for (the checkpoint's), run_steps: the run's, as final/'s steps
            best_meta.update(best_step=best["step"], steps=best["step"], run_steps=s.step)
        else:
            best_meta = {"selection": "last step (no validation EER)", "val_eer": final_eer}
        self._keep_best_of_deleted_checkpoint(where.name if where is not None else None, best_meta["val_eer"])
        best_dir = self._export("best", best_meta, checkpoint=where)
        barrier()
        return self._result(best_dir, final_dir, final_eer, best=chosen)

    def _keep_best_of_deleted_checkpoint(self, exporting: str | None, eer: float | None) -> None:
        """Move aside (to ``best.<checkpoint>/``, with a warning) a best/ exported from a checkpoint deleted since whose
        val EER the best/ exported now (from checkpoint ``exporting``, of val EER ``eer``) does not beat, rather than
        write it over: its weights exist nowhere else.

        A checkpoint deleted to free space because best/ held it (then ``--resume trainer.epochs=...``) lost the run's
        best model for good when the resume ended (also when that resume was killed and a later one ended the run). A
        best/ superseded by a lower val EER, its checkpoint pruned from the top k since, is replaced as ever."""
        if not self.info.is_main:
            return
        directory = self.out_dir / "best"
        try:
            metadata = read_model_config(directory).get("metadata")
        except CheckpointError:  # none there, or damaged: nothing to keep
            return
        if not isinstance(metadata, dict):
            return
        name, kept_eer = metadata.get("checkpoint"), metadata.get("val_eer")
        if not isinstance(name, str) or name == exporting or name in ckpt.complete_checkpoints(self.ckpt_dir):
            return
        if eer is not None and isinstance(kept_eer, (int, float)) and eer < kept_eer:
            return
        aside, n = directory.with_name(f"best.{name}"), 1
        while aside.exists():
            n += 1
            aside = directory.with_name(f"best.{name}.{n}")
        try:
            directory.rename(aside)
        except OSError as exc:
            raise self._write_failed(f"the model directory {directory} (moving it aside to {aside})", exc) from None
        log.warning(
            "%s held the weights of %s (val EER %s), whose checkpoint was deleted: moved to %s, and best/ is exported "
            "from the checkpoints left",
            directory,
            name,
            kept_eer,
            aside,
        )

    def _fewer_than_average_top_k(self, k: int) -> dict[str, Any]:
        """Say (log and final/'s metadata) that final/ is not the average of trainer.average_top_k checkpoints asked
        for, but of ``k`` (k < 2: the last weights, whose batch-norm statistics are their own), and why."""
        cfg, ranked = self.cfg, len(self.state.ranked)
        if self._gone_top_k:
            why = f"the top-k checkpoint(s) {', '.join(self._gone_top_k)} were deleted"
        elif self.val_data is None:
            why = "there is no validation data to rank them by"
        else:
            why = "the run validated fewer times, or saved them under a lower trainer.keep_top_k"
        what = f"the average of the top {k}" if k >= 2 else "the last step's weights"
        bn = " (trainer.average_bn does not apply to them)" if k < 2 and cfg.average_bn != "mean" else ""
        if self.info.is_main:
            log.warning(
                "final/ holds %s%s, not the average of the top %d checkpoints trainer.average_top_k asks for: %d "
                "checkpoint(s) are ranked under %s (%s)",
                what,
                bn,
                cfg.average_top_k,
                ranked,
                self.ckpt_dir,
                why,
            )
        return {"average_top_k": cfg.average_top_k, "ranked_checkpoints": ranked}

    def _reestimate_average_bn(self) -> dict[str, Any]:
        """The batch-norm statistics of final/'s average of the top k checkpoints (in the model now), as
        trainer.average_bn says; returns what final/'s metadata records of them.

        An average of weights has activations whose statistics are not the mean of its checkpoints' (the moving
        average's mismatch, there at every step): with trainer.ema_decay they are always re-estimated, and with
        average_bn: reestimate on the same fixed batches (drawn here, at the end only: nothing of them is held
        while training). Every process estimates alike, on rank 0's batches."""
        if self.ema is None and self.cfg.average_bn == "mean":
            return {"average_bn": "mean"}
        estimate = self.bn_estimate if self.ema is not None else self._build_bn_estimate()
        if estimate is not None:
            estimate.load(estimate.estimate())
        return {"average_bn": "reestimate", "bn_batches": len(estimate.batches) if estimate is not None else 0}

    def _finish_assembly(self) -> TrainResult:
        """Nothing was trained: validate the mixture once (when the recipe has val data), export best/ = final/."""
        return self._validate_and_export_once("nothing to train: a parameter-free gate over frozen experts")

    def _fit_em(self) -> TrainResult:
        """Fit an EM back-end (``fitted_by_em``) on frames of data.train, validate once, export best/ = final/."""
        r = self.recipe
        backend = em_backend(self.module)
        gmm = backend.cfg  # type: ignore[union-attr]
        try:
            frames, seen = collect_frames(
                self.module,
                self.train_data,
                r.data,
                seed=r.seed,
                epochs=self.cfg.epochs,
                max_frames_per_class=gmm.max_frames_per_class,
                device=self.device,
                autocast=self._autocast,
            )
        except AudioError as exc:  # a file that fails when decoded: which one, and how to leave it out
            raise self._unusable_file(exc) from None
        if self.info.is_main:
            log.info(
                "EM: fitting %d components per class on %d spoof and %d bona fide frames (of %d and %d seen)",
                gmm.components,
                len(frames[0]),
                len(frames[1]),
                seen["spoof_frames"],
                seen["bonafide_frames"],
            )
        try:
            history = backend.fit(frames, seed=r.seed)  # type: ignore[union-attr, operator]
        except ValueError as exc:  # fewer frames than components, non-finite features
            raise ConfigError(f"model.backend {r.model.backend.name if r.model else 'gmm'}: {exc}") from None
        # iterations each class ran: em_iterations, or fewer where em_tolerance stopped it
        iterations = {name: len(lls) - 1 for name, lls in history.items()}
        if self.info.is_main:
            for name, lls in history.items():
                early = " (gain below em_tolerance)" if iterations[name] < gmm.em_iterations else ""
                log.info(
                    "EM: %s mean frame log-likelihood %.3f -> %.3f in %d iteration(s)%s",
                    name,
                    lls[0],
                    lls[-1],
                    iterations[name],
                    early,
                )
        self.state.epoch = self.cfg.epochs
        em = {
            "frames": {"spoof": len(frames[0]), "bonafide": len(frames[1])},
            **seen,
            "mean_log_likelihood": history,
            "iterations": iterations,
        }
        return self._validate_and_export_once("fitted by EM (no gradient steps)", em=em)

    def _validate_and_export_once(self, selection: str, **metadata: Any) -> TrainResult:
        """For a run without gradient steps: validate once (when the recipe has val data), export best/ = final/."""
        result = self._validate()
        eer = None if result is None else result.eer
        meta = {"selection": selection, "val_eer": eer, **metadata}
        final_dir = self._export("final", meta)
        best_dir = self._export("best", meta)
        barrier()
        return self._result(best_dir, final_dir, eer)

    def _result(
        self,
        best_dir: Path | None,
        final_dir: Path | None,
        final_eer: float | None,
        best: tuple[float, int] | None = None,
    ) -> TrainResult:
        s = self.state
        best_eer, best_step = best if best is not None else (s.best_eer, s.best_step)
        return TrainResult(
            out_dir=self.out_dir,
            step=s.step,
            epoch=s.epoch,
            best_eer=best_eer,
            best_step=best_step,
            stopped_early=s.stopped_early,
            best_dir=best_dir,
            final_dir=final_dir,
            final_eer=final_eer,
            history=list(self.history),
            batch_in_epoch=s.batch_in_epoch,
        )

    def _write_run_info(self, resumed_from: str | None) -> None:
        path = self.out_dir / "run.json"
        edited = changed_protocols(path) if resumed_from is not None else []
        if edited:
            # a protocol fixed between sessions is legitimate, but the run is then of two data sets: said once, and
            # each session's digests stay in run.json (sdd cv refuses such a fold: its folds must be of one data set)
            log.warning(
                "protocol file(s) %s changed since the last session of this run: the steps from %s on train and "
                "validate on their new rows, and best/ is chosen among validations of both",
                ", ".join(edited),
                resumed_from,
            )
        sessions: list[dict[str, Any]] = []
        earlier_recipe = None
        if path.is_file():
            try:
                earlier = json.loads(path.read_text(encoding="utf-8"))
                sessions = earlier.get("sessions", [])
                earlier_recipe = earlier.get("recipe")
            except (ValueError, AttributeError):  # invalid JSON or UTF-8, not an object
                sessions = None
            if not isinstance(sessions, list):  # a damaged record must not stop the run it records
                log.warning("%s is unreadable: the record of the earlier sessions starts afresh", path)
                sessions = []
        recipe, versions, commit = to_dict(self.recipe), self._session_code["versions"], self._session_code["git"]
        session: dict[str, Any] = {
            "started": _now(),
            # null until the session ends with best/ and final/ exported: a session left null was interrupted or failed
            "finished": None,
            "end_step": None,
            "argv": list(sys.argv),  # the command line (`sdd train RECIPE key=value ...`, `sdd cv ...`, a script's)
            "resumed_from": resumed_from,
            "start_step": self.state.step,
            "world_size": self.info.world_size,
            "device": str(self.device),
            "device_name": device_name(self.device),  # kernels, hence the last bits of the weights, differ by GPU
            # what the forward passes ran under: trainer.bf16 is only what was asked (GPU only; float32 on a GPU
            # without bfloat16 tensor cores), and the precision moves the weights and scores as the GPU does
            "autocast": "bfloat16" if self._bf16 else None,
            # relative protocol, audio and out_dir paths of the recipe are read against it
            "cwd": os.getcwd(),
            "torch_threads": torch.get_num_threads(),  # CPU reductions depend on it
            # the top-level recipe, versions and git are the latest session's (a resume may change the recipe,
            # or run under other code): each session keeps its own
            "recipe": recipe,
            "protocols": self._protocol_digests(),  # the protocol files as read, not only their names
            # the trained models it starts from, as read: a first stage exported again since holds other weights
            "model_dirs": self._model_dir_digests(),
            # the utterances selected from them (where/exclude/folds applied): a protocol folder has no digest
            "utterances": {
                "train": _utterance_counts(getattr(self, "train_table", None), getattr(self, "train_data", None)),
                "val": _utterance_counts(self.val_table, getattr(self, "val_data", None)),
            },
            "versions": versions,
            "git": commit,
        }
        last = sessions[-1] if sessions else None
        if isinstance(last, dict) and "recipe" not in last and isinstance(earlier_recipe, dict):
            last["recipe"] = earlier_recipe  # a record written before sessions kept theirs: the top-level one was it
        sessions.append(session)
        info = {
            "seed": self.recipe.seed,
            "recipe": recipe,
            "model_config": self.model_config,
            "versions": versions,
            "git": commit,
            "sessions": sessions,
        }
        atomic_write_bytes(path, (json.dumps(info, indent=2) + "\n").encode())

    def _record_finish(self) -> None:
        """Write the end of this session (``finished``, ``end_step``) into run.json's last session, the one
        ``_write_run_info`` opened: a session left without them was interrupted or failed."""
        if not self.info.is_main:
            return
        path = self.out_dir / "run.json"
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
            session = info["sessions"][-1]
            session["finished"], session["end_step"] = _now(), self.state.step
            atomic_write_bytes(path, (json.dumps(info, indent=2) + "\n").encode())
        except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:  # the models are exported: say, go on
            log.warning("%s: the end of this session is not recorded (%s)", path, exc)

    def _model_dir_digests(self) -> dict[str, str | None]:
        """``{model directory: its weights_digest}`` of ``init_from`` and ``mixture.expert_dirs`` (None: unreadable)."""
        r = self.recipe
        dirs = ([r.init_from] if r.init_from else []) + (list(r.mixture.expert_dirs) if r.mixture is not None else [])
        digests: dict[str, str | None] = {}
        for directory in dirs:
            try:
                digest = read_model_config(directory).get("weights_digest")
            except CheckpointError:  # moved since it was loaded: the run goes on with what it loaded
                digest = None
            digests[str(directory)] = digest if isinstance(digest, str) else None
        return digests

    def _protocol_digests(self) -> dict[str, str | None]:
        """``{protocol path: SHA-256 of the file}`` of every protocol the recipe reads (None: not a file)."""
        r = self.recipe
        specs = [*as_specs(r.data.train), *as_specs(r.data.val), *as_specs(r.molex.old_eval if r.molex else None)]
        return {spec.protocol: file_digest(spec.protocol) for spec in specs}

    def _teardown(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            try:
                writer.close()
            except OSError as exc:  # its last events unwritten: no reason to fail a finished run, or to hide the error
                log.warning("the TensorBoard log under %s is incomplete: %s", self.out_dir / "tb", exc)
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        if self._created_group:
            import torch.distributed as dist

            if self._completed:
                barrier()  # no rank tears the group (and rank 0 its store) down while another still uses it
            dist.destroy_process_group()
            self._created_group = False

    # --- MoLEx ---------------------------------------------------------------------------------------------
    def _old_eval(self) -> tuple[UtteranceTable, Dataset] | None:
        molex = self.recipe.molex
        if molex is None or not molex.old_eval:
            return None
        if not hasattr(self, "_old_eval_data"):
            table = read_tables(molex.old_eval, "molex.old_eval")
            self._old_eval_data = (table, build_dataset(table, self.recipe.data, train=False, seed=self.recipe.seed))
        return self._old_eval_data

    def _check_resumed_growth(self) -> None:
        """Refuse a resume whose ``molex.add_experts`` differs from its latest checkpoint's: a resume continues that
        checkpoint's model, grown by the recorded count (or not grown), which the model this recipe grows cannot
        load. Found by the checkpoint's load, it came after ``molex.old_eval`` had been scored (a whole corpus: a
        first stage's run resumed with the add-experts recipe has no old_eval recorded, so it was scored anew), in
        an error listing every recipe key that changed (a first stage's whole ``model`` section as ``-> null``)."""
        latest = ckpt.latest_checkpoint(self.ckpt_dir)
        if latest is None:
            return
        try:
            recorded = ckpt.load_checkpoint_record(latest, ("recipe",)).get("recipe") or {}
        except CheckpointError:  # refused, with what to do, when the resume loads it
            return
        was = int((recorded.get("molex") or {}).get("add_experts") or 0)
        now = self.recipe.molex.add_experts if self.recipe.molex is not None else 0
        if was == now:
            return
        saved = f"a model grown by {was} expert(s)" if was else "a model without added experts"
        # a first stage's run (nothing grown) goes on under its own recipe, not the add-experts one without the count
        back = f"set molex.add_experts back to {was}" if was else "resume it with the recipe it was started with"
        best = self.out_dir / "best"
        example = f", e.g. init_from={best}" if best.is_dir() else ""
        raise CheckpointError(
            f"cannot resume {latest} with molex.add_experts: {now}: it holds {saved} (molex.add_experts: {was}), "
            f"and a resume continues the checkpoint's model, whose experts cannot change; {back} to continue that "
            "run, or grow a trained model in another trainer.out_dir from its exported directory "
            f"(init_from=DIR molex.add_experts=N{example})"
        )

    def _old_eval_changed(self) -> bool:
        """Whether ``molex.old_eval`` differs from the latest checkpoint's: the old-domain results saved with it (its
        ``before``) are then of other data, or none (old_eval added on a resume), and molex_report.json's forgetting
        compared ``after`` on the new data with them, or was left out without a word."""
        latest = ckpt.latest_checkpoint(self.ckpt_dir)
        if latest is None:
            return False
        try:
            recorded = ckpt.load_checkpoint_record(latest, ("recipe",)).get("recipe") or {}
        except CheckpointError:  # refused, with what to do, when the resume loads it
            return False
        now = (to_dict(self.recipe).get("molex") or {}).get("old_eval")
        changed = ((recorded.get("molex") or {}).get("old_eval")) != now
        if changed and now is not None and self.info.is_main:
            log.info("molex.old_eval changed since %s: scoring it with the model before the expert addition", latest)
        return changed

    def _molex_before(self) -> dict[str, Any] | None:
        old = self._old_eval()
        if old is None:
            return None
        if self.recipe.init_from is None:
            # nothing was learnt before this run: "before" was the random initialisation, and forgetting_eer the
            # trained model's EER minus chance's, read as what training cost the old domains
            if self.info.is_main:
                log.warning(
                    "molex.old_eval without init_from: there is no trained model before this run, so the old domains "
                    "are scored after training only (no forgetting_eer)"
                )
            return None
        table, dataset = old
        result = self._evaluate(dataset, collect_stats=True)
        return self._describe(result, table)

    def _describe(self, result: EvalResult, table: UtteranceTable) -> dict[str, Any]:
        attacks = np.asarray(table.column("attack"), dtype=str)[result.indices]
        corpora = np.asarray(table.column("corpus"), dtype=str)[result.indices]  # tells apart attacks named alike
        return describe_by_attack(result.labels, result.scores, result.stats, attacks, corpora)

    def _report_section(self, table: UtteranceTable, dataset: Dataset, what: str) -> dict[str, Any]:
        """One data set's part of molex_report.json. Written after best/ and final/ were exported: non-finite
        scores there give ``{"error": ...}`` and a warning, not a failed run whose models are saved (every rank
        sees the gathered scores, so all take the same way)."""
        try:
            return self._describe(self._evaluate(dataset, collect_stats=True), table)
        except TrainingDivergedError as exc:
            log.warning("molex_report.json: the %s data could not be scored: %s", what, exc)
            return {"error": str(exc)}

    def _molex_report(self, before: dict[str, Any] | None) -> None:
        molex = self.recipe.molex
        if molex is None:
            return
        old = self._old_eval()
        val = self.val_data is not None and self.val_table is not None
        report = molex_report(
            added_experts=molex.add_experts,
            trainable=self.expert_addition.trainable_names if self.expert_addition else None,
            weights="best" if self.state.ranked else "last",
            layers=molex_layer_names(self.module),
            before=before,
            old_after=self._report_section(*old, "old_eval") if old is not None else None,
            new_domain=self._report_section(self.val_table, self.val_data, "val") if val else None,  # type: ignore[arg-type]
        )
        report = broadcast_object(report)
        if self.info.is_main:
            path = self.out_dir / "molex_report.json"
            try:
                atomic_write_bytes(path, (json.dumps(report, indent=2) + "\n").encode())
            except OSError as exc:  # a full disk after best/ and final/ were written: a resume of the run writes it
                raise self._write_failed(str(path), exc) from None


def bf16_autocast(wanted: bool, device: torch.device) -> tuple[bool, str | None]:
    """Whether ``trainer.bf16`` (``wanted``) trains under bfloat16 autocast on ``device``, and the warning to log
    where it was asked for but is not used.

    Only on a GPU with bfloat16 tensor cores (compute capability 8.0, Ampere, or newer; ROCm): a V100 or T4 has
    none, and torch emulates bfloat16 there, slower than float32 and with 8 significant bits, so the default
    ``bf16: true`` trained a recipe slower and less precisely than float32 on those GPUs. They train in float32,
    said in one line (run.json's ``autocast`` records it). The CPU never autocasts (as documented)."""
    if not wanted or device.type != "cuda":
        return False, None
    if torch.version.hip:  # torch takes bfloat16 as native on ROCm (torch.cuda.is_bf16_supported)
        return True, None
    major, minor = torch.cuda.get_device_capability(device)
    if major >= 8:
        return True, None
    return False, (
        f"trainer.bf16: {torch.cuda.get_device_name(device)} (compute capability {major}.{minor}) has no bfloat16 "
        "tensor cores (they start with compute capability 8.0, Ampere): training in float32, as bfloat16 would be "
        "emulated there, slower than float32 and less precise (set trainer.bf16: false to drop this warning)"
    )


def _now() -> str:
    """The local time, ISO 8601 with its UTC offset, as run.json records a session's start and end."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _check_given_model(model: nn.Module, model_config: Any, architecture: str) -> None:
    """Refuse a model given to :class:`Trainer` that ``model_config`` (or the recipe's ``model``) does not rebuild:
    its model directories record that config, and loading them builds it and reads the saved weights into it.
    Built on the meta device (no memory, no weights read; a ``pretrained`` folder gives its architecture), as
    ``sdd describe`` does; compared by the names and shapes of the parameters and buffers."""
    from sddkit.detectors.model_dir import ARCHITECTURES, state_differences
    from sddkit.pretrained import folder_architectures, without_pretrained

    fix = (
        "pass Trainer(..., model_config=...) the config that builds this model (for a Detector, "
        "sddkit.config.to_dict of its DetectorConfig), or set the recipe's model to it"
    )
    if not isinstance(model_config, dict):
        raise ConfigError(f"the model given to the trainer has no model config to record in best/ and final/: {fix}")
    if architecture != "detector":  # a mixture's config names its experts' directories, which load their weights
        return
    try:
        with torch.device("meta"):
            rebuilt = ARCHITECTURES[architecture](without_pretrained(folder_architectures(model_config)))
    except ConfigError as exc:
        raise ConfigError(f"the model config of the model given to the trainer does not build: {exc}; {fix}") from None
    except (RuntimeError, NotImplementedError):  # a component of one's own that computes on real data when built
        return  # not checked here (building it on the CPU could read a whole encoder): loading its exports checks it
    want, have = rebuilt.state_dict(), model.state_dict()
    missing, unexpected, bad_shapes = state_differences(want, have)
    if not (missing or unexpected or bad_shapes):
        return
    only = sorted(missing + unexpected)
    if only:
        name = only[0]
        problem = f"{name} is only in {'the model given' if name in have else 'the model the config builds'}"
    else:
        name = bad_shapes[0]
        problem = (
            f"{name} has shape {tuple(have[name].shape)} in the model given, {tuple(want[name].shape)} in the model "
            "the config builds"
        )
    raise ConfigError(
        f"the model given to the trainer is not the one its model config builds ({problem}): best/ and final/ "
        f"record that config, so they would not load; {fix}"
    )


def _utterance_counts(table: UtteranceTable | None, data: Dataset | None) -> dict[str, int] | None:
    """``{"n", "bonafide", "spoof"}`` of the utterances a run reads (its table's, when it has one; only ``n`` of a
    dataset given without one), None when it reads none."""
    if table is not None:
        bona = int(table.labels.sum())
        return {"n": len(table), "bonafide": bona, "spoof": len(table) - bona}
    try:
        return None if data is None else {"n": len(data)}  # type: ignore[arg-type]
    except TypeError:  # an iterable dataset without a length
        return None


def _strategy_seed(recipe: dict[str, Any], default: int) -> Any:
    """The seed a recipe (a ``to_dict`` form) builds its strategy's generator from: ``strategy.seed``, else the
    recipe's ``seed``."""
    strategy = recipe.get("strategy") or {}
    seed = strategy.get("seed") if isinstance(strategy, dict) else None
    return seed if seed is not None else recipe.get("seed", default)


def _eer_shown(eer: float | None) -> str:
    """A val EER (a fraction) as the progress bar shows it: in percent, as the summary line, with its unit (a bare
    ``val_eer=0.2500`` beside the bar's own ``(10%)`` read as 0.25 %)."""
    return "n/a" if eer is None else f"{100 * eer:.2f}%"


def _changed_model(exc: CheckpointError, changes: list[str]) -> CheckpointError:
    """The error of a checkpoint whose weights or optimiser state do not fit the model the recipe builds now: with
    the recipe keys changed since it was saved, which a resume cannot apply to the model it continues."""
    if not changes:
        return exc
    return CheckpointError(
        f"{exc}; the recipe changed since that checkpoint was saved ({'; '.join(changes)}): a resume continues the "
        "checkpoint's model, whose shape and trainable parameters cannot change; undo the change, or train the "
        "changed model in another trainer.out_dir (init_from= starts it from an exported model directory)"
    )


def _check_same_weights(first: str, a: dict[str, torch.Tensor], other: str, b: dict[str, torch.Tensor]) -> None:
    """Refuse to average checkpoints whose weights are not of one model (other tensors, or other shapes)."""
    problem = None
    if set(a) != set(b):
        only = sorted(set(a) ^ set(b))
        problem = f"{only[0]} is in {first if only[0] in a else other} only"
    else:
        key = next((k for k in a if a[k].shape != b[k].shape), None)
        if key is not None:
            problem = f"{key} has shape {tuple(a[key].shape)} in {first}, {tuple(b[key].shape)} in {other}"
    if problem is not None:
        raise CheckpointError(
            f"cannot average checkpoints {first} and {other} (trainer.average_top_k): {problem}, the weights of "
            "different models; continue with --resume trainer.average_top_k=1 (final/ then holds the last weights)"
        )
