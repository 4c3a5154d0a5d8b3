"""``TrainRecipe``: the typed, strict training recipe (``sdd train RECIPE.yaml [key=value ...]``).

    seed: 1234
    model: {frontend: {...}, backend: {...}}      # a DetectorConfig (or init_from: an sddkit model dir,
                                                  # or mixture: {experts|expert_dirs, gate, freeze_experts})
    data: {train: {protocol: ..., format: sddbench, options: {partitions: [train]}}, val: ..., ...}
    strategy: {name: mldg, beta: 1.0}             # one optimisation step (registry `strategy`)
    optimizer: {lr: 1e-5, weight_decay: 1e-4}     # AdamW over the trainable parameters only
    schedule: {name: cyclic, base_lr: 1e-7, max_lr: 1e-5, step_size: 2000}
    loss: {class_weights: [0.1, 0.9]}             # weighted CE over (spoof, bona fide)
    trainer: {epochs: 10, val_every: 500, patience: 5, out_dir: runs/x}
    molex: {add_experts: 2, old_eval: [...]}      # optional: MoLEx expert addition / report

Every section is a dataclass parsed by :func:`sddkit.config.from_dict`: unknown keys raise
``ConfigError`` naming the dotted path and the valid keys.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from sddkit.config import (
    apply_overrides,
    component_field,
    did_you_mean,
    expand_home,
    expand_root_options,
    from_dict,
    load_yaml,
    set_away_from_default,
    to_dict,
)
from sddkit.detectors.detector import DetectorConfig
from sddkit.detectors.mixture import MixtureConfig, expert_names
from sddkit.errors import ConfigError, UnknownNameError
from sddkit.registry import ComponentSpec, get_registry


@dataclass
class FoldSpec:
    """Keep some folds of a protocol split by groups (``UtteranceTable.group_folds``).

    by: group columns, the first non-empty one per row decides its group: the rows of one group (one pair)
    never straddle folds, but a speaker recorded in several pairs can (sddbench's ljspeech speaker spans 3
    of 4 folds of ``train``); ``by: [speaker]`` keeps every speaker in one fold. n: number of folds.
    keep: the fold indices kept. Two stages of a mixture take complementary ``keep`` lists, e.g. experts
    ``[0, 1, 2]`` and the gate ``[3]``, so the gate learns on utterances the experts never trained on. A
    ``by`` column the table lacks counts as empty (only sddbench has ``pair_id``); at least one must exist.
    """

    n: int
    keep: list[int]
    by: list[str] = field(default_factory=lambda: ["pair_id", "speaker"])

    def __post_init__(self) -> None:
        if self.n < 2:
            raise ValueError(f"n must be >= 2, got {self.n}")
        if not self.keep or any(not 0 <= k < self.n for k in self.keep):
            raise ValueError(f"keep must list fold indices in [0, {self.n}), got {self.keep}")


@dataclass
class ProtocolSpec:
    """One protocol/manifest read with ``sddkit.data.protocols.read_protocol(protocol, format, **options)``.

    options: the reader's own settings (``root`` audio folder, ``partitions``, ...); a corpus folder read as a whole
    (``folder``, ``fake_or_real``, ``mlaad``, ...) is ``protocol`` itself, and an ``options.root`` naming another
    folder is refused. ``where`` keeps
    only rows whose column value is listed, e.g. ``{attack: [A01, A02]}`` (a value no row of the protocol
    has is an error: a typo would drop its rows); ``exclude`` drops rows whose
    column value is listed (``sdd cv`` holds sources out with it; a value no row of the protocol has is an
    error too: a typo would exclude nothing). A ``where``/``exclude`` column that no table of the named ``format``
    has is refused when the recipe is read (``sdd train --print-config``, ``sdd describe``); one of a format whose
    columns are its file's own (``utterance_table``), or of a format left to detection, when the protocol is read.
    ``folds`` then keeps some
    group folds (``FoldSpec``), e.g. ``{n: 4, keep: [3]}``. Relative paths are
    resolved against the working directory (run ``sdd train`` from the repo root); a leading ``~`` of ``protocol``
    and ``options.root`` (as of ``trainer.out_dir``, ``init_from`` and ``mixture.expert_dirs``) is the home folder.
    """

    protocol: str
    format: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    where: dict[str, str | list[str]] = field(default_factory=dict)
    exclude: dict[str, str | list[str]] = field(default_factory=dict)
    folds: FoldSpec | None = None

    def __post_init__(self) -> None:
        if not self.protocol.strip():  # read as the working directory: "data.train: .: no such utterance table"
            raise ValueError(f"protocol must name a protocol file or corpus folder, got {self.protocol!r}")
        # `~` as a shell expands it: a recipe's ~/data/... was "no such file", looked for under a folder named ~
        self.protocol = expand_home(self.protocol)
        # folder options too: `root` and the bona fide corpora beside a spoof-only one (bonafide_root, ljspeech_root)
        self.options = expand_root_options(self.options)
        # read_protocol let an options.protocol replace `protocol`: the recipe named one file and trained on another
        if "protocol" in self.options:
            raise ValueError(
                f"options.protocol: {self.options['protocol']} would replace this spec's protocol ({self.protocol}); "
                "give the file once, as protocol"
            )
        # a misspelt format or reader option fails when the recipe is read, not when training starts reading data
        if self.format is None:
            return
        registry = get_registry("protocol")
        try:
            entry = registry.get(self.format)
        except UnknownNameError as exc:
            raise ValueError(f"format: {exc}") from None  # the error ends with the closest name
        # the reader's `protocol` is this spec's own (not an option)
        fields = dataclasses.fields(entry.config_cls) if entry.config_cls else ()
        valid = sorted(f.name for f in fields if f.name != "protocol")
        unknown = sorted(set(self.options) - set(valid), key=repr)
        if unknown:
            raise ValueError(
                f"options: unknown key(s) {', '.join(map(repr, unknown))}{did_you_mean(unknown, valid)} for format "
                f"{self.format!r}; valid keys: {', '.join(valid) or '(none)'}"
            )
        root = self.options.get("root")
        if isinstance(root, str) and "protocol" not in {f.name for f in fields}:
            from sddkit.data.protocols import _other_folder

            # a corpus folder's reader reads `root`: this one replaced the spec's protocol (read_protocol refuses it
            # too; refused here when the recipe is read, wherever the lexical check can tell)
            protocol = Path(self.protocol)
            if _other_folder(root, protocol) and _other_folder(root, protocol.parent):
                raise ValueError(
                    f"options.root: {root} would replace this spec's protocol ({self.protocol}): format "
                    f"{self.format!r} reads the corpus folder given as protocol; give the folder once, as protocol"
                )
        if entry.config_cls is not None:  # their types too (`root: 5` was accepted): the reader's config, no file read
            from sddkit.data.protocols import _LIST_OPTIONS

            params = {k: [v] if k in _LIST_OPTIONS and isinstance(v, str) else v for k, v in self.options.items()}
            params.setdefault("protocol" if any(f.name == "protocol" for f in fields) else "root", str(self.protocol))
            from_dict(entry.config_cls, params, "options")
        self._check_filter_columns()

    def _check_filter_columns(self) -> None:
        """Refuse a ``where``/``exclude`` column that no table of this spec's format has, where the reader's columns
        are known without reading it: a misspelt column (``where: {sourc: x}``) was found only when the table was read,
        after start-up (a model loaded, for ``sdd train``), and ``--print-config`` and ``sdd describe`` passed it. A
        format whose columns are its file's own (``utterance_table``), or one left to detection, is checked when read.
        """
        from sddkit.data.protocols import known_columns

        columns = known_columns(self.format) if self.format is not None else None
        if columns is None:
            return
        for key in ("where", "exclude"):
            unknown = [c for c in getattr(self, key) if c not in columns]
            if unknown:
                raise ValueError(
                    f"{key}: unknown column(s) {', '.join(map(repr, unknown))}{did_you_mean(unknown, columns)}: no "
                    f"table of format {self.format!r} has {'it' if len(unknown) == 1 else 'them'}; its columns: "
                    f"{', '.join(columns)}"
                )


@dataclass
class DataConfig:
    """Training/validation data, crops, batching and augmentation.

    train, val: one protocol spec or a list of them (concatenated); a single spec can be
    overridden key by key (``data.train.protocol=/data/LA/...``).
    sampler: ``random`` (shuffled, sharded over DDP ranks), or one of the samplers of
    ``sddkit.data.samplers``: ``class_balanced``, ``domain_balanced``, ``domain_batch`` (MLDG
    batches holding several domains); ``sampler_options`` go to that sampler's constructor (``domain_batch``
    refuses ``bonafide_fraction: 0``, blocks without a bona fide item).
    augment: augmentation specs (registry ``augmentation``) applied to training crops only; read back (and recorded)
        with every default written out.
    distinct_draws: an item drawn twice in one epoch (the balanced samplers oversample the smaller
        class or domain) gets a new crop and augmentation for each draw (:class:`DistinctDraws`).
        ``false`` gives the behaviour before 2026-12-02, where a repeat was an exact copy of the
        first draw; it exists to reproduce models trained then (the bundled default model).
    crop_samples: training crop: a window drawn anew for every draw of a file (uniform over every start),
        repeat-padded (tiled) when the file is shorter.
    val_crop_samples: validation crop (default ``crop_samples``): the first ``val_crop_samples`` samples of each
        val file, repeat-padded, the same every run and on every rank. It is also the exported model's
        ``inference.window_samples``; ``sdd score`` averages the windows of a longer file (``aggregation: mean``)
        where validation scores its first window only (``first``), so the two EERs differ on long files.
    decode_cache: ``none`` decodes every file each time it is read; ``lazy`` keeps each decoded
        16 kHz file in its loader process after the first read (memory grows to the whole set per
        worker; with ``num_workers > 0`` the workers, and their caches, last one epoch, so within an
        epoch only repeated draws gain: use ``preload`` to decode once); ``preload`` decodes the whole
        set once before training (``num_workers`` threads, at least one) into one shared buffer that
        forked loader workers share (spawned ones, macOS' default, map it from shared memory). Decoding
        and resampling then cost nothing per step; memory is about 230 MB per hour of audio. A set that
        would not fit in the memory left (Linux: ``MemAvailable`` and the cgroup's limit) is refused with
        an error: before decoding when the protocol gives every file's ``duration_s``, else after the
        first 64 MB decoded (extrapolated to the rest).
    max_duration_s: the longest file read for training or validation (seconds, null: no limit); a longer
        one stops the run with an error naming it (as ``sdd score --max-duration-s`` bounds scoring). So does
        any file that cannot be read (missing, undecodable, silent): no file is ever skipped. Before the first
        step (and on every resume) every file of ``train``, ``val`` and ``molex.old_eval`` is looked up, whatever
        ``decode_cache``: one that is missing, empty, a directory or a broken link stops the run there, in one error
        naming them all. A file that is there but does not decode is met by ``preload`` before the first step
        (the look-up comes first, so a missing file is not found after minutes of decoding), which names every
        such file in one error; by ``none`` and ``lazy`` when it is first drawn, possibly epochs in: the error
        names its utterance and how to leave it out on ``--resume``, and a one-process run first saves the steps
        taken since its last checkpoint.
    """

    train: ProtocolSpec | list[ProtocolSpec] | None = None
    val: ProtocolSpec | list[ProtocolSpec] | None = None
    crop_samples: int = 64600
    val_crop_samples: int | None = None
    batch_size: int = 8
    val_batch_size: int | None = None
    sampler: Literal["random", "class_balanced", "domain_balanced", "domain_batch"] = "random"
    sampler_options: dict[str, Any] = field(default_factory=dict)
    domain_column: str = "attack"
    num_workers: int = 0
    augment: list[Any] = field(default_factory=list)  # names or {name: ..., **params}
    decode_cache: Literal["none", "lazy", "preload"] = "none"
    distinct_draws: bool = True
    max_duration_s: float | None = 600.0

    def __post_init__(self) -> None:
        if self.crop_samples <= 0:
            raise ValueError(f"crop_samples must be positive, got {self.crop_samples}")
        if self.max_duration_s is not None and not self.max_duration_s > 0:  # NaN too: it would disable the bound
            raise ValueError(f"max_duration_s must be > 0 (or null: no limit), got {self.max_duration_s}")
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        for name in ("val_crop_samples", "val_batch_size"):  # 0 or less would silently mean "unset" or no batch
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive (or null), got {value}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        self._check_sampler_options()
        registry = get_registry("augmentation")
        # parse now so a typo in an augmentation fails when the recipe is read, not mid-run; the path is relative
        # (``augment[2].snr_db``): from_dict puts the section's own path (``data.``) in front
        self.augment_specs: list[ComponentSpec] = [
            registry.parse(a, path=f"augment[{i}]") for i, a in enumerate(self.augment)
        ]
        # kept with every default written out, as the model's components are: the recipe a run records (run.json,
        # its checkpoints, best/ and final/) held each entry as written (`{name: noise, p: 0.4}`), so a default
        # changed since (noise's low_hz went from 0 to 20 Hz) read back as today's, and a resume went on under the
        # new augmentation with no word, recording the run as trained under one recipe throughout
        self.augment = [to_dict(spec) for spec in self.augment_specs]
        from sddkit.augment.pipeline import check_waveform_specs

        check_waveform_specs(self.augment_specs, "augment")  # spec_augment here was refused only at training start

    def _check_sampler_options(self) -> None:
        """Names in ``sampler_options`` that the sampler takes; checked now, not after the data has been read.

        ``random`` takes none (its options would be silently ignored); the others take their constructor's keyword
        arguments less those the trainer passes itself (seed, rank, world size, the batch size, labels, domains and
        their names).
        """
        if not self.sampler_options:
            return
        if self.sampler == "random":
            raise ValueError(
                f"sampler_options: {sorted(self.sampler_options)} given, but sampler 'random' takes no options"
            )
        import inspect

        from sddkit.data import samplers

        cls = samplers.DomainBatchSampler if self.sampler == "domain_batch" else samplers.GroupBalancedSampler
        supplied = {"seed", "rank", "world_size", "batch_size", "strata", "names"}
        valid = sorted(
            name
            for name, param in inspect.signature(cls.__init__).parameters.items()
            if param.kind is inspect.Parameter.KEYWORD_ONLY and name not in supplied
        )
        unknown = sorted(set(self.sampler_options) - set(valid), key=repr)
        if unknown:
            raise ValueError(
                f"sampler_options: unknown key(s) {', '.join(map(repr, unknown))}{did_you_mean(unknown, valid)} "
                f"for sampler {self.sampler!r}; valid keys: {', '.join(valid)}"
            )
        # their types too, as the sampler's signature gives them: a quoted `share_bonafide: 'false'` was true (a
        # non-empty string), and `num_samples: '10000'` failed only once the training data had been read
        import typing

        from sddkit.config import convert_value

        hints = typing.get_type_hints(cls.__init__)
        # kept as read, as every recipe field is: `Infinity` (a recipe printed as JSON by --print-config) as the
        # number it checked as (left text, the sampler compared a string with numbers, a TypeError once the training
        # data was read), a count written as a float (`num_samples: 1e4`) as an integer
        self.sampler_options = {
            name: convert_value(hints[name], value, f"sampler_options.{name}")
            for name, value in self.sampler_options.items()
        }
        # the objective tells bona fide from spoof: blocks of spoofs only trained a model that never saw a bona fide
        # item (the sampler takes 0 for other uses; a run cannot)
        if self.sampler == "domain_batch" and self.sampler_options.get("bonafide_fraction") == 0:
            raise ValueError(
                "sampler_options.bonafide_fraction: 0 makes every domain block spoofs only: training would never "
                "see a bona fide item; give a fraction above 0 (published: 0.5)"
            )


@dataclass
class OptimizerConfig:
    """AdamW over the trainable parameters. With the ``cyclic`` schedule, ``lr`` is replaced by it (a value other than
    the default is refused there: schedule.base_lr and max_lr set the lr)."""

    name: Literal["adamw"] = "adamw"
    lr: float = 1e-5
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be in [0, 1), got {self.betas}")
        if not 0 < self.eps < math.inf:  # 0 divides 0 by 0 for a parameter whose gradients are all zero: NaN weights
            raise ValueError(f"eps must be positive and finite, got {self.eps}")
        if not math.isfinite(self.lr) or not math.isfinite(self.weight_decay):
            raise ValueError(f"lr and weight_decay must be finite, got {self.lr}, {self.weight_decay}")


@dataclass
class ScheduleConfig:
    """Learning-rate schedule, stepped once per optimisation step.

    cyclic: ``torch.optim.lr_scheduler.CyclicLR`` between ``base_lr`` and ``max_lr``; ``step_size``
    is the half-cycle in steps (the published recipe: triangular, 1e-7 .. 1e-5).
    cosine: linear warm-up over ``warmup_steps`` to ``optimizer.lr``, then cosine decay that reaches
    ``min_lr_ratio * lr`` when the planned steps (``trainer.max_steps`` or epochs x steps per epoch; after a
    resume under another ``data.batch_size`` or number of processes, the steps taken plus those left) are done,
    so the last step runs just above it (the convention of Hugging Face's cosine schedule).
    constant: ``optimizer.lr`` throughout (after the optional warm-up).
    """

    name: Literal["cyclic", "cosine", "constant"] = "constant"
    base_lr: float = 1e-7
    max_lr: float = 1e-5
    step_size: int = 2000
    cyclic_mode: Literal["triangular", "triangular2", "exp_range"] = "triangular"
    gamma: float = 1.0
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0

    def __post_init__(self) -> None:
        if self.name == "cyclic" and not 0 < self.base_lr <= self.max_lr < math.inf:
            raise ValueError(f"cyclic needs 0 < base_lr <= max_lr (finite), got {self.base_lr}, {self.max_lr}")
        if not 0.0 < self.gamma <= 1.0:  # exp_range scales by gamma**step: above 1 it explodes, at or below 0 flips
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")
        if self.step_size <= 0:
            raise ValueError(f"step_size must be positive, got {self.step_size}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        # values a schedule never reads would be silently ignored: a recipe saying one thing and training another
        ignored = {"cyclic": ("warmup_steps", "min_lr_ratio"), "constant": ("min_lr_ratio",)}.get(self.name, ())
        for key in ignored:
            if getattr(self, key):
                raise ValueError(f"{key}: {getattr(self, key)} has no effect with schedule {self.name!r} (set it to 0)")
        if self.name != "cyclic":
            # `{name: cosine, max_lr: 1e-3}` trained at optimizer.lr, a hundred times lower, without a word
            changed = set_away_from_default(self, _CYCLIC_ONLY)
            if changed:
                key = changed[0]
                raise ValueError(
                    f"{key}: {getattr(self, key)} is read by schedule 'cyclic' only; schedule {self.name!r} "
                    "follows optimizer.lr (leave it out)"
                )


_CYCLIC_ONLY = ("base_lr", "max_lr", "step_size", "cyclic_mode", "gamma")


@dataclass
class LossConfig:
    """Weighted cross-entropy over (spoof, bona fide) plus the detector's auxiliary losses.

    class_weights: e.g. ``[0.1, 0.9]`` (spoof, bona fide) as published for ASVspoof 2019 LA,
    where spoofs outnumber bona fide about 9:1; ``None`` = unweighted.
    domain_alignment: weight of a class-conditional alignment penalty on the detector's embeddings
    across the batch's domains (``data.domain_column``; see :func:`~sddkit.training.losses.domain_spread`);
    0 (the default) leaves the objective as it was. Refused for a mixture's gate over frozen experts, whose
    embedding (the experts') it cannot move, and at the first step wherever no trainable parameter computes the
    embedding (e.g. a frozen encoder without adapter under the linear head's parameter-free pooling), and before
    the first step when neither class of the training data spans two domains (the penalty would be 0 throughout).
    kind: ``ce`` (cross-entropy) or ``oc_softmax`` (one-class softmax, Zhang et al. 2021), which needs a
    back-end with ``head: cosine``, whose ``head_scale`` is the loss's scale s: with c the cosine score,
    bona fide costs ``softplus(s * (m_bonafide - c))`` and spoof ``softplus(s * (c - m_spoof))``;
    ``oc_margins`` = (m_spoof, m_bonafide), published (0.2, 0.9) with s = 20 (the default head_scale); other
    margins with ``kind: ce``, which never reads them, are refused.
    """

    class_weights: tuple[float, float] | None = None
    label_smoothing: float = 0.0
    domain_alignment: float = 0.0
    kind: Literal["ce", "oc_softmax"] = "ce"
    oc_margins: tuple[float, float] = (0.2, 0.9)

    def __post_init__(self) -> None:
        # one per class (spoof, bona fide): a recipe's list is checked when read, LossConfig(...) in Python was not,
        # and with kind oc_softmax a third weight was ignored and a single one failed at the first bona fide item
        if self.class_weights is not None and len(self.class_weights) != 2:
            raise ValueError(f"class_weights must be 2 numbers (spoof, bona fide), got {self.class_weights}")
        # both positive: a zero weight makes the mean loss of a batch of that class 0/0 = NaN (a "divergence");
        # finite: an infinite one (YAML .inf) makes it inf/inf = NaN too
        if self.class_weights is not None and not all(0 < w < math.inf for w in self.class_weights):
            raise ValueError(f"class_weights must both be positive and finite, got {self.class_weights}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0 <= self.domain_alignment < math.inf:  # .inf: an infinite loss, NaN gradients from the first step
            raise ValueError(f"domain_alignment must be >= 0 and finite, got {self.domain_alignment}")
        spoof_margin, bonafide_margin = self.oc_margins
        if not -1.0 <= spoof_margin < bonafide_margin <= 1.0:
            raise ValueError(
                f"oc_margins must be (m_spoof, m_bonafide) with -1 <= m_spoof < m_bonafide <= 1, got {self.oc_margins}"
            )
        if self.kind == "oc_softmax" and self.label_smoothing > 0:
            raise ValueError("label_smoothing applies to kind: ce only, not to oc_softmax")
        # `{oc_margins: [0.3, 0.8]}` without `kind: oc_softmax` trained plain cross-entropy without a word
        if self.kind != "oc_softmax" and set_away_from_default(self, ["oc_margins"]):
            raise ValueError(
                f"oc_margins: {list(self.oc_margins)} is read by kind: oc_softmax only; kind {self.kind!r} "
                "ignores it (set kind: oc_softmax, or leave oc_margins out)"
            )


@dataclass
class TrainerConfig:
    """The loop: length, validation, early stopping, checkpoints, logging, device.

    epochs, max_steps: the run ends after ``epochs`` epochs or ``max_steps`` optimisation steps, whichever comes
    first (the schedule plans that many steps). val_every: validate every N steps (``None``: at the end of every
    epoch); the last step is always validated too, so that the end of a run can be selected as best. patience:
    stop after this many validations in a row without a strictly lower EER (``None``: never; a tie is no
    improvement, and the earlier of tied checkpoints stays best). keep_top_k: best checkpoints kept
    on disk (the latest one is always kept too, for ``--resume``). average_top_k: if >= 2, the
    exported ``final/`` model is the average of the best k checkpoints' weights (its batch-norm running statistics
    as ``average_bn`` says, and ``final/``'s val EER is measured with them); a LoRA layer, and each
    MoLEx expert, gets the rank-r truncation of the mean of its k updates B A (not the means of A and of
    B, whose product is not that mean), recorded as ``lora_average`` and the fraction of the mean update's
    norm lost, ``lora_average_loss``, in ``final/``'s metadata (a MoLEx expert's refactored A enters the
    orthogonality loss differently if training continues from ``final/``; ``add_experts`` starts from ``best/``).
    average_bn: the running statistics of ``final/``'s average (``average_top_k`` >= 2) of the batch norms that
    training updates (and of instance norms with ``track_running_stats``): ``mean`` (the default) averages the
    checkpoints' statistics like the weights, although they are not the statistics of the averaged weights'
    activations; ``reestimate`` estimates them anew for the averaged weights, as SWA's ``update_bn`` does and as
    ``ema_decay`` does (the same way, on the same ``ema_bn_batches`` fixed training batches; see below). With
    ``ema_decay`` set they are always re-estimated, ``mean`` included (it does not apply there). ``final/``'s
    metadata records which (``average_bn``) and, re-estimated, on how many batches (``bn_batches``; 0: no such
    norm). A ``--resume`` of a finished run (its top-k checkpoints on disk) with ``trainer.average_bn=reestimate``
    takes no step and exports ``final/`` again with re-estimated statistics (``best/`` unchanged).
    save_every: also checkpoint every N steps (``None``: only when validating and at the end).
    ema_decay: with a decay d in [0, 1), keep an exponential moving average of the weights, ``ema = d * ema +
    (1 - d) * param`` after every optimiser step for each trainable parameter (float32, on the model's device;
    frozen parameters and buffers, e.g. batch-norm running statistics, are the model's own), starting from the
    weights training starts with (after a MoLEx growth). Validation, the best/top-k ranking, the checkpoints'
    ``model`` (``average_top_k`` averages those), ``best/`` and ``final/`` are then that average, recorded as
    ``ema_decay`` in their metadata; training goes on from the raw weights, which checkpoints keep too
    (``raw_model``) for ``--resume``. ``null`` (the default): no average. d = 0 is the raw weights, bit for bit;
    0.999 averages over about the last 1000 steps. A resume cannot switch it on or off (another d applies from
    the restored step on). The running statistics of the batch norms that training updates (and of instance norms
    with ``track_running_stats``; not those of frozen parts kept in eval mode) are re-estimated for the averaged
    weights before every validation, checkpoint and export (``final/``'s average of the top k too), as SWA's
    ``update_bn`` does (the averaged weights' activations have other statistics than the raw model's): reset, then
    accumulated (``momentum`` None for a batch norm, 1/k at an instance norm's k-th call: the cumulative average) over
    ``ema_bn_batches`` fixed training batches passed through the averaged model in training mode
    (``model.train()``: dropout on, from generators seeded by the recipe seed) without gradients; the raw
    model's statistics, the random generators and the modes are then restored exactly, so training goes on as
    without validation. That costs ``ema_bn_batches`` forward passes per validation (and per checkpoint saved at
    a step not validated).
    ema_bn_batches: how many training batches (of ``data.batch_size``) those statistics are re-estimated on, for
    ``ema_decay`` and for ``average_bn: reestimate`` alike
    (default 8, at least 1; fewer when the training set holds fewer): drawn once when training starts (for
    ``average_bn: reestimate`` without ``ema_decay``, when it ends), as the
    training sampler draws them for a pseudo-epoch no run reaches, with its crops and augmentation, from the
    recipe seed alone (the same on every process, and after a resume), and kept on the device. Recorded as
    ``ema_bn_batches`` in the exported metadata (``bn_batches`` in ``final/``'s for ``average_bn``; the number used;
    0: no batch norm to re-estimate).
    device: where training runs: ``auto`` (CUDA when this machine has it, else the CPU), ``cpu``, ``cuda`` (GPU 0; under
    torchrun each process's GPU ``LOCAL_RANK``) or ``cuda:N`` (GPU N, one process only: under torchrun choose the GPUs
    with ``CUDA_VISIBLE_DEVICES``). A GPU this machine lacks is refused before anything is read.
    bf16: bfloat16 autocast, applied on a GPU with bfloat16 tensor cores only (compute capability 8.0, Ampere, or
    newer): on the CPU, and with a warning on an older GPU (V100, T4: bfloat16 emulated, slower than float32), training
    runs in float32. run.json's sessions record what was used (``autocast``). The output layer computes the logits in
    float32 under autocast too, so validation scores (and the EER that picks ``best/``) are not rounded to bfloat16.
    """

    epochs: int = 10
    max_steps: int | None = None
    val_every: int | None = None
    patience: int | None = None
    keep_top_k: int = 1
    average_top_k: int = 1
    average_bn: Literal["mean", "reestimate"] = "mean"
    save_every: int | None = None
    grad_clip: float | None = None
    ema_decay: float | None = None
    ema_bn_batches: int = 8
    log_every: int = 10
    out_dir: str = "runs/train"
    device: str = "auto"  # auto | cpu | cuda | cuda:N (checked below; a Literal refused cuda:N, which sdd score takes)
    bf16: bool = True
    deterministic: bool = False
    progress: bool = True
    find_unused_parameters: bool = True

    def __post_init__(self) -> None:
        if not self.out_dir.strip():  # an empty path is the working directory: the run's files went there unasked
            raise ValueError(
                f"out_dir must name the run's folder, got {self.out_dir!r} (write '.' for the working directory)"
            )
        # out_dir: ~/runs/x made a folder named ~ in the working directory (which `rm -rf ~` then would not remove...)
        self.out_dir = expand_home(self.out_dir)
        _check_device(self.device)
        for name in ("epochs", "keep_top_k", "average_top_k", "ema_bn_batches", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_steps", "val_every", "patience", "save_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 (or null), got {value}")
        # "not > 0", so NaN fails too: clipping to NaN turned every gradient into NaN with a finite logged norm
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be positive (or null), got {self.grad_clip}")
        # "not 0 <= d < 1", so NaN fails too; 1 would keep the initial weights for good
        if self.ema_decay is not None and not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) (or null: no moving average), got {self.ema_decay}")
        if self.average_top_k > self.keep_top_k:
            raise ValueError(f"average_top_k ({self.average_top_k}) needs keep_top_k >= it ({self.keep_top_k})")
        if self.average_bn not in ("mean", "reestimate"):  # a config built in Python is not checked by the parser
            raise ValueError(f"average_bn must be 'mean' or 'reestimate', got {self.average_bn!r}")
        # final/ is then the last weights, with their own statistics: there is no average to re-estimate them for
        if self.average_bn == "reestimate" and self.average_top_k < 2:
            raise ValueError(
                "average_bn: reestimate applies to final/'s average of the top checkpoints (average_top_k >= 2); "
                f"with average_top_k {self.average_top_k} final/ holds the last weights (set average_top_k, or leave "
                "average_bn out)"
            )


TRAIN_DEVICES = ("auto", "cpu", "cuda")


def _check_device(device: str) -> None:
    """Refuse a ``trainer.device`` other than ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (whether this machine has that
    GPU is checked when training starts: a recipe is written on one machine and run on another). ``cuda:1`` was
    refused with "did you mean 'cuda'?", which trained on GPU 0, maybe another job's, while ``sdd score`` takes it."""
    if isinstance(device, str) and (device in TRAIN_DEVICES or re.fullmatch(r"cuda:\d+", device)):
        return
    mps = "; Apple's MPS is not supported for training (sdd score --device mps scores there)" if device == "mps" else ""
    # `gpu` (or gpu:1) is one letter from `cpu`: the spelling hint said "did you mean 'cpu'?", and the user who
    # followed it trained on the CPU they meant to avoid
    gpu = re.fullmatch(r"gpu(:\d+)?", device.lower()) if isinstance(device, str) else None
    hint = f" (for a GPU write cuda{gpu.group(1) or ''})" if gpu else did_you_mean([device], TRAIN_DEVICES)
    raise ValueError(f"device: {device!r} is not one of {list(TRAIN_DEVICES)}{hint} or cuda:N (GPU N){mps}")


@dataclass
class MolexConfig:
    """MoLEx expert addition and reporting (needs a front-end with ``add_experts``).

    add_experts: with ``init_from``, grow the front-end by this many experts and train only the new
    experts and the new router rows (plus the back-end if ``train_backend``). A model it cannot grow (no MoLEx
    front-end, or top-k routers, which never select the new experts) is refused as soon as ``init_from`` is loaded,
    before ``old_eval`` is scored with it; so is a ``--resume`` with another ``add_experts`` than its checkpoint's
    (whose model it continues: a first stage's run, or a run grown by another count).
    new_expert_bias: the router bias the added experts start with (``null``: the front-end's
    ``molex.new_expert_bias``, default -6: about 0.08 % of the routing weight for one new expert beside three old
    ones at logit 0): how much the new experts are used from the first step. Their B starts at 0, so they add nothing
    themselves, but the router's softmax takes that share of the weight from the old experts: the old domains'
    outputs lose that share of the adapter's effect from the first step (0.08 % at -6; a quarter at 0).
    old_eval: protocols of the previously learned domains, scored before and after training to
    measure forgetting (EER) in ``out_dir/molex_report.json`` (a ``--resume`` that adds or changes it scores the model
    as it was before the addition, ``init_from``, on it again); expert use per attack system is
    reported on the validation data (and on ``old_eval``; an attack name used by several corpora there, per corpus:
    ``corpus/attack``). The frozen parts' BatchNorm layers stay in
    eval mode while the new experts train (their running statistics are not updated). The report is
    written after ``best/`` and ``final/``: a data set the model then scores non-finite is reported as
    ``{"error": ...}`` (and logged) instead of failing the finished run.
    """

    add_experts: int = 0
    train_backend: bool = False
    new_expert_bias: float | None = None
    old_eval: ProtocolSpec | list[ProtocolSpec] | None = None

    def __post_init__(self) -> None:
        if self.add_experts < 0:
            raise ValueError(f"add_experts must be >= 0, got {self.add_experts}")
        if self.new_expert_bias is not None and not math.isfinite(self.new_expert_bias):
            raise ValueError(f"new_expert_bias must be finite (or null), got {self.new_expert_bias}")
        if self.new_expert_bias is not None and self.add_experts == 0:
            raise ValueError("new_expert_bias applies to expert addition only (add_experts > 0)")
        # read by the expert addition only: without it, it was silently ignored and the back-end trained (or not) as any
        if self.train_backend and self.add_experts == 0:
            raise ValueError(
                "train_backend: true applies to expert addition only (add_experts > 0); without it every trainable "
                "parameter trains, the back-end included"
            )


def as_specs(value: ProtocolSpec | list[ProtocolSpec] | None) -> list[ProtocolSpec]:
    """A spec field (one, a list, or None) as a list."""
    if value is None:
        return []
    return [value] if isinstance(value, ProtocolSpec) else list(value)


def _default_strategy() -> ComponentSpec:
    return get_registry("strategy").parse("erm")


# seeds are below 2**32 (numpy's legacy seed range): the samplers' and data loaders' generators are seeded with
# seed * 1_000_003 + epoch, which must fit torch's 64-bit seed (a nanosecond timestamp crashed the first epoch)
SEED_LIMIT = 2**32


@dataclass
class TrainRecipe:
    """A complete training run. ``model`` is required unless ``init_from`` names a model directory.

    seed: non-negative, below 2**32.
    """

    CONFIG_NAME: ClassVar[str] = "recipe"  # errors about its top-level keys say "recipe: ...", not the class name
    seed: int = 0
    model: DetectorConfig | None = None
    mixture: MixtureConfig | None = None
    init_from: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    strategy: ComponentSpec = component_field("strategy", default_factory=_default_strategy)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    molex: MolexConfig | None = None

    def __post_init__(self) -> None:
        if self.init_from is not None and not self.init_from.strip():  # "." and its "missing config.json"
            raise ValueError(f"init_from must name a model directory (or be left out), got {self.init_from!r}")
        if self.init_from is not None:
            self.init_from = expand_home(self.init_from)
        if not 0 <= self.seed < SEED_LIMIT:  # else numpy's or torch's generators refuse it, deep inside data loading
            raise ValueError(f"seed must be non-negative and below 2**32, got {self.seed}")
        given = [k for k in ("model", "mixture", "init_from") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a recipe needs exactly one of 'model' (a detector config), 'mixture' (a detector mixture) "
                f"or 'init_from' (a model directory); got {given or 'none'}"
            )
        m = self.mixture
        if m is not None and m.freeze_experts and not m.expert_dirs:
            raise ValueError(
                "mixture.freeze_experts with experts given only as configs would train the gate over randomly "
                "initialised experts that never learn: give mixture.expert_dirs (the trained experts) or set "
                "mixture.freeze_experts: false (experts and gate trained together)"
            )
        if m is not None and m.expert_names:
            try:  # a name sdd eval's gate tables cannot show: refused here, before any expert loads
                expert_names(m)
            except ConfigError as exc:
                raise ValueError(f"mixture.{exc}") from None
        if self.schedule.name == "cyclic" and set_away_from_default(self.optimizer, ["lr"]):
            # CyclicLR sets every step's lr itself: `optimizer.lr=1e-6` (what a diverged run was told to try) trained
            # between base_lr and max_lr as before, and diverged again
            raise ValueError(
                f"optimizer.lr: {self.optimizer.lr} is not read with schedule 'cyclic', whose lr runs between "
                f"schedule.base_lr ({self.schedule.base_lr}) and schedule.max_lr ({self.schedule.max_lr}): set those "
                "instead, and leave optimizer.lr out"
            )
        if self.molex is not None and self.molex.add_experts > 0 and self.init_from is None:
            raise ValueError("molex.add_experts needs 'init_from' (the model directory to grow)")
        trained = [("model", self.model)]
        if m is not None and not m.freeze_experts:  # experts trained with the gate: the same checks
            trained += [(f"mixture.experts[{i}]", expert) for i, expert in enumerate(m.experts)]
        for where, config in trained:
            for frontend in _ssl_frontends(config):
                problem = frontend.training_problem()
                if problem is not None:
                    raise ValueError(f"{where}: {problem}")
        # built afresh, not loaded with trained weights: the model, and experts given only as configs
        fresh = trained if m is None or not m.expert_dirs else []
        for where, config in fresh:
            for frontend in _ssl_frontends(config):
                problem = frontend.molex.built_afresh_problem() if frontend.molex is not None else None
                if problem is not None:
                    raise ValueError(f"{where}: {problem}")


def _ssl_frontends(obj: Any) -> list[Any]:
    """Every ``ssl`` front-end config inside a parsed model config (dataclasses and registry specs)."""
    from sddkit.frontends.ssl import SSLFrontendConfig

    if isinstance(obj, SSLFrontendConfig):
        return [obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return [m for f in dataclasses.fields(obj) for m in _ssl_frontends(getattr(obj, f.name))]
    if isinstance(obj, (list, tuple)):
        return [m for item in obj for m in _ssl_frontends(item)]
    return []


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainRecipe:
    """Read a YAML recipe, apply ``key=value`` overrides, and parse it strictly."""
    data = load_yaml(path)
    _check_not_a_model_config(data, path)
    data = apply_overrides(data, list(overrides))
    check_model_keys_placed(data, path)
    return from_dict(TrainRecipe, data)


def _check_not_a_model_config(data: dict[str, Any], path: str | Path) -> None:
    """A ConfigError when ``data`` is a model directory's ``config.json`` (JSON is YAML) given as a recipe: its
    keys were refused one by one as unknown recipe keys (``'architecture', 'format', ... (did you mean 'data'?)``)."""
    from sddkit.detectors.model_dir import FORMAT

    if data.get("format") == FORMAT:
        raise ConfigError(
            f"{path}: the config.json of a model directory, not a training recipe; a recipe starts from that model "
            f"with init_from: {Path(path).parent}"
        )
    record = run_record_kind(data)
    if record is not None:  # its keys were refused one by one as unknown recipe keys ('git', 'recipe', ...)
        what, key = record
        raise ConfigError(
            f"{path}: {what}, not a training recipe: the recipe that run trained under is its '{key}' entry (save "
            "that as a file to train it again; `sdd train RECIPE --resume` with the run's recipe continues the run)"
        )


def run_record_kind(data: dict[str, Any]) -> tuple[str, str] | None:
    """(what ``data`` is, the key of the recipe it holds) when it is a file a training run writes beside its model
    directories (its ``run.json``, a checkpoint's ``state.json``), which holds a recipe without being one; None for
    anything else."""
    from sddkit.training.checkpoint import FORMAT as CHECKPOINT_FORMAT

    if data.get("format") == CHECKPOINT_FORMAT:
        return "the state of a training checkpoint", "state.recipe"
    if isinstance(data.get("recipe"), dict) and "sessions" in data:
        return "the record of a training run (run.json)", "recipe"
    return None


def check_model_keys_placed(data: dict[str, Any], path: str | Path) -> None:
    """A ConfigError naming the section a detector's or a mixture's keys belong in, when a recipe has them at top
    level (a file ``sdd describe`` reads, given to ``sdd train``): they were refused as unknown recipe keys."""
    recipe_keys = {f.name for f in dataclasses.fields(TrainRecipe)}
    for section, cls in (("model", DetectorConfig), ("mixture", MixtureConfig)):
        misplaced = [f.name for f in dataclasses.fields(cls) if f.name in data and f.name not in recipe_keys]
        if misplaced:
            raise ConfigError(
                f"{path}: {', '.join(map(repr, misplaced))} at top level: a recipe holds its "
                f"{'detector' if section == 'model' else 'mixture'} config under '{section}:' "
                f"(e.g. {section}: {{{misplaced[0]}: ...}})"
            )
    _check_section_keys_placed(data, path, recipe_keys)


def _check_section_keys_placed(data: dict[str, Any], path: str | Path, recipe_keys: set[str]) -> None:
    """A ConfigError naming the section each top-level key belongs in, when keys of the recipe's sections (``data``,
    ``trainer``, ...) sit at top level: a section whose keys were not indented under it (``data:`` then ``train:``
    on the next line at its level). They were refused as unknown recipe keys, ``train`` with "did you mean
    'trainer'?", which sent the user to the wrong section."""
    sections = {
        "data": DataConfig,
        "optimizer": OptimizerConfig,
        "schedule": ScheduleConfig,
        "loss": LossConfig,
        "trainer": TrainerConfig,
        "molex": MolexConfig,
    }
    homes: dict[str, list[str]] = {}
    for key in data:
        if isinstance(key, str) and key not in recipe_keys:
            found = [name for name, cls in sections.items() if key in {f.name for f in dataclasses.fields(cls)}]
            if found:
                homes[key] = found
    if not homes:
        return
    by_section: dict[str, list[str]] = {}
    for key, found in homes.items():
        by_section.setdefault(" or ".join(f"{s}:" for s in found), []).append(repr(key))
    placed = "; ".join(f"{', '.join(keys)} under {where}" for where, keys in by_section.items())
    left_empty = [s for s in dict.fromkeys(s for v in homes.values() for s in v) if s in data and data[s] is None]
    empty = f" ({' and '.join(f'{s}:' for s in left_empty)} left empty above them)" if left_empty else ""
    key, found = next(iter(homes.items()))
    raise ConfigError(
        f"{path}: keys of a recipe section at top level{empty}: {placed}; put them in their section (indented under "
        f"it in the recipe; as an override, {found[0]}.{key}=...)"
    )


# --- comparing a recorded recipe with today's (a resume, a cross-validation rerun) -------------------------------

# Recipe keys that change how a run goes (where, on what, how fast, how much it logs), not what it computes
RUN_SETTINGS = frozenset(
    {
        "trainer.out_dir",
        "trainer.progress",
        "trainer.log_every",
        "trainer.device",
        "trainer.deterministic",
        "trainer.find_unused_parameters",
        "data.num_workers",
        "data.decode_cache",
        # how many validation crops go through the model at once (the first val_crop_samples of each file, in eval
        # mode: each one's score is its own); lowered after running out of memory in validation, it was a changed
        # recipe, and `sdd cv` refused to resume or read back the folds started before it
        "data.val_batch_size",
    }
)


def recorded_recipe(recipe: dict[str, Any]) -> dict[str, Any]:
    """A recipe as a checkpoint or ``run.json`` recorded it, parsed again so that one written by an older
    sddkit compares equal to today's form of the same settings (as recorded if it no longer parses). A key the
    older sddkit did not record reads as what it did, where that is not today's default (:func:`_as_it_ran`)."""
    try:
        return to_dict(from_dict(TrainRecipe, _as_it_ran(recipe)))
    except (ConfigError, ValueError, TypeError):
        return recipe


def _as_it_ran(recipe: dict[str, Any]) -> dict[str, Any]:
    """``recipe`` with ``data.distinct_draws: false`` where an sddkit before 2026-12-02 recorded no such key under a
    sampler that repeats items within an epoch: it gave a repeat its first draw's crop and augmentation. Parsed with
    today's default (true), a resume of its checkpoint under new code switched to distinct draws with no warning,
    and best/ and final/ recorded the run as trained under one recipe throughout. (``random`` never repeats an item:
    the key changes nothing there, and is left to its default.)"""
    data = recipe.get("data")
    if not isinstance(data, dict) or "distinct_draws" in data or data.get("sampler", "random") == "random":
        return recipe
    return {**recipe, "data": {**data, "distinct_draws": False}}


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": [1, {"c": 2}]}}`` -> ``{"a.b.0": 1, "a.b.1.c": 2}``: the dotted keys of ``key=value``
    overrides, list items by index, so a change shows where it is; an empty mapping or list is a leaf."""
    if isinstance(value, dict) and value:
        items = value.items()
    elif isinstance(value, list) and value:
        items = enumerate(value)
    else:
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, item in items:
        out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return out


_EMPTY = (None, {}, [])  # a key absent, null, or an empty mapping/list: no value either way


def _brief(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def recipe_changes(
    recorded: dict[str, Any], now: dict[str, Any], *, ignore: frozenset[str] = RUN_SETTINGS
) -> list[str]:
    """``"key: before -> after"`` for every dotted recipe key that differs between ``recorded`` (see
    :func:`recorded_recipe`) and ``now`` (a ``to_dict`` form), but those in ``ignore``."""

    def flat(recipe: dict[str, Any]) -> dict[str, Any]:  # as JSON holds it: tuples are lists there
        return _flatten(json.loads(json.dumps(recipe, default=str)))

    before, after = flat(recorded_recipe(recorded)), flat(now)
    keys = sorted(
        (k for k in before.keys() | after.keys() if not any(k == i or k.startswith(f"{i}.") for i in ignore)),
        key=lambda k: [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in k.split(".")],  # item 10 after 9
    )
    return [
        f"{k}: {_brief(before.get(k))} -> {_brief(after.get(k))}"
        for k in keys
        if before.get(k) != after.get(k) and not (before.get(k) in _EMPTY and after.get(k) in _EMPTY)
    ]
