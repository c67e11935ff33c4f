"""``KDBrain``: a speaker-embedding Brain with an optional frozen teacher.

Without a teacher (and without ``distill_terms``) it is a plain speaker
classifier trainer, used for teachers and no-KD students. With a teacher,
the loss is the task loss (e.g. AAM softmax) plus a weighted sum of the
``distill_terms`` of the YAML::

    distill_terms:
        trkd:
            fn: !name:speechbrain_kd.objectives.trkd.trkd_loss
                T: 4.0
            weight: 1.0

Each ``fn`` receives, by name, whichever of these inputs its signature asks
for (arguments already bound in the YAML are left alone):

- ``student_logits``, ``teacher_logits``: ``[batch, classes]``;
- ``targets``: ``[batch]`` class indices;
- ``student_embedding``, ``teacher_embedding``: ``[batch, dim]``;
- ``lengths``: ``[batch]`` relative lengths of the waveforms;
- ``tau``: the current value of ``tau_schedule`` (updated every epoch);
- ``student_<alias>`` / ``teacher_<alias>``: outputs of the sub-layers named
  in ``student_taps`` / ``teacher_taps`` (``{alias: submodule path}``),
  recorded with forward hooks (``speechbrain_kd.taps.LayerTaps``); a
  ``fn`` with ``**kwargs`` receives all of them.

A term whose ``fn`` is a ``torch.nn.Module`` (``!new:``, e.g. a loss with a
projection head) is trained with the student: it joins ``modules`` as
``distill_<name>`` (optimiser, device, DDP) and the checkpointer. A term
needs no tensor input at all (e.g. ``objectives.complexity.ComplexityLoss``,
the FLOPs of a dynamic-width student); one with an ``epoch_stats()`` method
adds its dict to the training statistics logged every epoch.

The modules this Brain expects (``modules`` of the YAML) are
``compute_features``, ``mean_var_norm``, ``embedding_model`` and
``classifier`` (a cosine classifier whose outputs times ``logit_scale`` are
the student logits), as in SpeechBrain's speaker recipes.

Reliability (built on ``speechbrain.Brain``):

- a non-finite training loss never updates the weights: the batch is
  skipped with a warning naming the epoch, the step, the batch IDs and the
  value of every term; after ``--nonfinite_patience`` such batches in an
  epoch (SpeechBrain's option, default 3; 0 stops at the first) training
  stops with that message, before any checkpoint is written, so the last
  checkpoint is a good one;
- an interrupted run (even ``kill -9``) resumes from its last checkpoint,
  end-of-epoch or intra-epoch (``--ckpt_interval_steps`` /
  ``--ckpt_interval_minutes``), with the same tau, learning rate, data
  order and crops, and ends with the same figures as an uninterrupted run:
  the per-term training statistics are checkpointed with the step, the
  crops of an ``EpochDataset`` depend only on (seed, epoch, ID), and
  ``AtomicCheckpointer`` never leaves a half-written checkpoint;
- under ``torchrun`` the examples of every optimiser step are those of a
  single-process run with ``batch_size`` times the number of processes
  (same sampler on every process, split between them); on CPU (gloo) the
  BatchNorm layers are not converted to ``SyncBatchNorm`` (CUDA only);
- teacher/student class counts, the teacher's label encoder, the class
  order of a checkpoint and the range of tau and of the distillation
  hyperparameters are checked, with errors naming the key.
"""

import functools
import inspect
import logging
import math
import numbers
import os

import speechbrain as sb
import torch
import yaml
from speechbrain.dataio.sampler import ReproducibleRandomSampler
from speechbrain.utils.checkpoints import (
    Checkpointer,
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)
from speechbrain.utils.distributed import if_main_process
from speechbrain.utils.metric_stats import MetricStats
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import IterableDataset

from speechbrain_kd.checkpointing import (
    AtomicCheckpointer,
    ClassOrder,
    RandomState,
    TermStatistics,
    distributed,
    world,
)
from speechbrain_kd.export import unwrap_module
from speechbrain_kd.taps import LayerTaps

logger = logging.getLogger(__name__)

INPUTS = (
    "student_logits",
    "teacher_logits",
    "targets",
    "student_embedding",
    "teacher_embedding",
    "lengths",
    "tau",
)


class DistillTerm:
    """One weighted distillation term: a loss function and its inputs.

    Arguments
    ---------
    name : str
        The key of the term in ``distill_terms`` (used in logs and errors).
    fn : callable
        A loss function taking some of the Brain's inputs by name.
    weight : float
        Non-negative weight of the term in the total loss.
    provided : sequence of str
        The input names the Brain provides (``INPUTS`` and the taps).

    Example
    -------
    >>> from speechbrain_kd.objectives.kd import kd_loss
    >>> term = DistillTerm("kd", functools.partial(kd_loss, T=2.0), 0.5)
    >>> term.inputs
    ['student_logits', 'teacher_logits']
    """

    def __init__(self, name, fn, weight=1.0, provided=INPUTS):
        if not callable(fn):
            raise TypeError(
                f"distill_terms[{name}][fn] must be callable (use !name: or "
                f"!new:), got {fn!r}"
            )
        if (
            isinstance(weight, bool)
            or not isinstance(weight, numbers.Real)
            or not weight >= 0
            or weight == float("inf")
        ):
            raise ValueError(
                f"distill_terms[{name}][weight] must be a finite number >= 0, "
                f"got {weight!r}"
            )
        bound = fn.keywords if isinstance(fn, functools.partial) else {}
        for key, value in bound.items():
            check_hyperparameter(f"distill_terms[{name}][fn][{key}]", value)
        target = fn.forward if isinstance(fn, torch.nn.Module) else fn
        params = inspect.signature(target).parameters.values()
        unknown = [
            p.name
            for p in params
            if p.default is inspect.Parameter.empty
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            and p.name not in provided
            and p.name not in bound
        ]
        if unknown:
            raise ValueError(
                f"distill_terms[{name}][fn] needs {unknown}, which the Brain "
                f"does not provide (it provides {sorted(provided)}); bind "
                "them in the YAML or tap them with student_taps/teacher_taps"
            )
        self.name, self.fn, self.weight = name, fn, float(weight)
        self.wrapper = None  # the DDP wrapper of a learnable fn, if any
        self.inputs = [
            p.name for p in params if p.name in provided and p.name not in bound
        ]
        # A fn with **kwargs also receives every tapped layer output.
        if any(p.kind == p.VAR_KEYWORD for p in params):
            self.inputs += [
                n
                for n in provided
                if n not in INPUTS and n not in self.inputs and n not in bound
            ]

    def __call__(self, available):
        """The unweighted loss, given a dict of the available inputs."""
        missing = [k for k in self.inputs if available.get(k) is None]
        if missing:
            raise ValueError(
                f"distill_terms[{self.name}] needs {missing}, which this run "
                "does not compute (no teacher, or no tau_schedule?)"
            )
        fn = self.fn if self.wrapper is None else self.wrapper
        return fn(**{k: available[k] for k in self.inputs})


def check_hyperparameter(where, value, name=None):
    """Range check of a distillation hyperparameter, by its name.

    ``T`` / ``temperature`` must be finite and > 0, ``tau`` in (0, 1], and
    weights (``alpha``, ``beta``, ``weight``, ``lambda_*``) finite and
    >= 0. Other names are not checked.

    Arguments
    ---------
    where : str
        The YAML key, e.g. ``distill_terms[trkd][fn][T]`` (named in the
        error).
    value : object
        The value given.
    name : str, optional
        The name that sets the range; by default the last part of
        ``where`` (``T`` above).

    Example
    -------
    >>> from speechbrain_kd.brain import check_hyperparameter
    >>> check_hyperparameter("distill_terms[kd][fn][T]", 4.0)
    >>> check_hyperparameter("distill_terms[kd][fn][T]", 0)
    Traceback (most recent call last):
    ...
    ValueError: distill_terms[kd][fn][T] must be a finite number > 0, got 0
    """
    if name is None:
        name = where.rstrip("]").rsplit("[", 1)[-1]
    if name in ("T", "temperature"):
        ok, expected = (lambda v: v > 0), "a finite number > 0"
    elif name == "tau":
        ok, expected = (lambda v: 0 < v <= 1), "a number in (0, 1]"
    elif name in ("alpha", "beta", "weight") or name.startswith("lambda"):
        ok, expected = (lambda v: v >= 0), "a finite number >= 0"
    else:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or not ok(value)
    ):
        raise ValueError(f"{where} must be {expected}, got {value!r}")


def build_terms(spec, provided=INPUTS):
    """Builds ``DistillTerm`` objects from the ``distill_terms`` YAML entry.

    Arguments
    ---------
    spec : dict or None
        ``{name: {"fn": callable, "weight": float}}``.
    provided : sequence of str
        The input names the Brain provides.

    Returns
    -------
    list of DistillTerm
    """
    if not spec:
        return []
    if not isinstance(spec, dict):
        raise TypeError(f"distill_terms must be a mapping, got {type(spec)}")
    terms = []
    for name, entry in spec.items():
        if not isinstance(entry, dict) or "fn" not in entry:
            raise ValueError(
                f"distill_terms[{name}] must be a mapping with 'fn' (and "
                f"optionally 'weight'), got {entry!r}"
            )
        extra = set(entry) - {"fn", "weight"}
        if extra:
            raise ValueError(f"distill_terms[{name}] has unknown keys {extra}")
        terms.append(
            DistillTerm(name, entry["fn"], entry.get("weight", 1.0), provided)
        )
    return terms


def provided_inputs(hparams):
    """The input names a Brain built from ``hparams`` provides."""
    names = list(INPUTS)
    for side in ("student", "teacher"):
        names += [
            f"{side}_{alias}" for alias in hparams.get(f"{side}_taps") or {}
        ]
    return names


class KDBrain(sb.Brain):
    """Trains a speaker-embedding student, optionally from a frozen teacher.

    Arguments
    ---------
    teacher : speechbrain_kd.teachers.FrozenTeacher, optional
        The teacher; kept outside ``modules`` (not optimised, not wrapped in
        DDP, never put in train mode).
    *args, **kwargs
        As ``speechbrain.Brain``.
    """

    def __init__(
        self,
        modules=None,
        opt_class=None,
        hparams=None,
        run_opts=None,
        checkpointer=None,
        teacher=None,
    ):
        hparams = dict(hparams or {})
        terms = build_terms(
            hparams.get("distill_terms"), provided_inputs(hparams)
        )
        if terms and teacher is None:
            raise ValueError("distill_terms are set but no teacher was given")
        # Learnable terms (projection heads...) train with the student.
        modules = dict(modules or {})
        for term in terms:
            if isinstance(term.fn, torch.nn.Module):
                modules[f"distill_{term.name}"] = term.fn
                if checkpointer is not None and (
                    f"distill_{term.name}" not in checkpointer.recoverables
                ):
                    checkpointer.add_recoverable(
                        f"distill_{term.name}", term.fn
                    )
        super().__init__(modules, opt_class, hparams, run_opts, checkpointer)
        self.terms = terms
        self.teacher = teacher
        if teacher is not None:
            teacher.to(self.device)
            teacher.eval()
        self.student_taps = LayerTaps(
            unwrap_module(self.modules.embedding_model),
            hparams.get("student_taps"),
        )
        self.tau_schedule = hparams.get("tau_schedule")
        self.kd_warmup = hparams.get("kd_warmup")
        self.logit_scale = float(hparams.get("logit_scale", 30.0))
        self.tau = None
        self.kd_factor = 1.0
        if self.tau_schedule is not None and not callable(self.tau_schedule):
            check_hyperparameter("tau_schedule", self.tau_schedule, "tau")
        self.teacher_source = str(hparams.get("teacher_source", "teacher"))
        if teacher is not None:
            self._check_teacher_classes(hparams.get("out_n_neurons"))
        # The student's classes are the teacher's, unless embedding-only
        # distillation gave it its own (speechbrain_kd.recipe)
        if checkpointer is not None:
            extra = {
                "random_state": RandomState(),
                "term_statistics": TermStatistics(terms),
            }
            if teacher is not None and not hparams.get("embedding_only"):
                encoder = teacher.label_encoder
                labels = [encoder.ind2lab[i] for i in range(len(encoder))]
                extra["teacher_classes"] = ClassOrder(
                    labels, f"the teacher {self.teacher_source}"
                )
            for name, obj in extra.items():
                if name not in checkpointer.recoverables:
                    checkpointer.add_recoverable(name, obj, optional_load=True)
        if type(checkpointer) is Checkpointer:
            # Same object and state, atomic saves (no attribute is added)
            checkpointer.__class__ = AtomicCheckpointer
        elif checkpointer is not None and not isinstance(
            checkpointer, AtomicCheckpointer
        ):
            logger.warning(
                "The checkpointer is not an AtomicCheckpointer: a run killed "
                "while saving can leave a checkpoint that does not load"
            )
        self.train_dataset = None  # an EpochDataset, set by make_dataloader
        self.epoch = None
        self.nonfinite_batches = []  # (epoch, step, ids, terms) this epoch
        self._batch_ids, self._batch_terms = [], {}
        self._nonfinite_here = False
        self._buffers_before = None  # buffers before the current step
        self._recovered_stats = None
        self._inputs_checked = False
        self.teacher_cache = None  # set by use_teacher_cache

    def use_teacher_cache(self, cache):
        """Trains from ``cache`` (``speechbrain_kd.teacher_cache``) instead
        of running the teacher, which leaves the device (it is moved back
        by ``teacher_to_device``, e.g. to score it after training)."""
        self.teacher_cache = cache
        if self.teacher is not None:
            self.teacher.to("cpu")

    def teacher_to_device(self):
        """Puts the teacher on the run's device (after cached training)."""
        if self.teacher is not None:
            self.teacher.to(self.device)

    def _check_teacher_classes(self, out_n_neurons):
        """Clear error when teacher and student class counts differ."""
        num = self.teacher.num_classes
        if out_n_neurons is not None and int(out_n_neurons) != num:
            raise ValueError(
                f"out_n_neurons is {out_n_neurons} but the teacher "
                f"{self.teacher_source} has {num} classes (its label "
                "encoder): the student's classes are the teacher's; run "
                f"again with --out_n_neurons={num}"
            )

    def _check_logits(self, student_logits, teacher_logits, targets):
        """Clear error when the logits of teacher and student disagree or
        the targets are not class indices (on the first batch only: the
        range check synchronises the host with the device)."""
        n_s = student_logits.shape[-1]
        low, high = int(targets.min()), int(targets.max())
        if low < 0 or high >= n_s:
            raise ValueError(
                f"The training targets must be class indices in [0, {n_s}) "
                f"(the student's classes), got {low}..{high}: check "
                "out_n_neurons and the label encoder"
            )
        if teacher_logits is None:
            return
        n_t = teacher_logits.shape[-1]
        if n_t != self.teacher.num_classes:
            raise ValueError(
                f"The teacher {self.teacher_source} outputs {n_t} classes "
                f"but its label encoder (label_encoder.ckpt) has "
                f"{self.teacher.num_classes}: the teacher folder is "
                "inconsistent"
            )
        if n_s != n_t:
            raise ValueError(
                f"The student classifier outputs {n_s} classes but the "
                f"teacher {self.teacher_source} {n_t}: logit distillation "
                "needs the same classes in the same order (set "
                f"--out_n_neurons={n_t} and the teacher's label encoder)"
            )

    def compute_forward(self, batch, stage):
        """Student (and, in training, teacher) forward pass."""
        batch = batch.to(self.device)
        wavs, lens = batch.sig
        emb = self.embed(wavs, lens)
        out = self.modules.classifier(emb)
        preds = {"classifier_out": out, "student_embedding": emb}
        for alias, value in self.student_taps.pop().items():
            preds[f"student_{alias}"] = value
        if self.teacher is not None and stage == sb.Stage.TRAIN and self.terms:
            if self.teacher_cache is not None:  # no teacher forward pass
                outputs = self.teacher_cache.read(
                    batch.cache_index, batch.view, self.device
                )
            else:
                outputs = self.teacher(wavs, lens)
            for key, value in outputs.items():
                preds[f"teacher_{key}"] = value
        preds["lengths"] = lens
        return preds

    def embed(self, wavs, lens, unwrap=False):
        """Student embeddings ``[batch, 1, dim]`` (as ``EncoderClassifier``).

        ``unwrap``: use the modules inside their DDP wrappers (inference on
        one process must not join the wrappers' collective operations).
        """
        mods = {
            name: unwrap_module(self.modules[name]) if unwrap else m
            for name, m in self.modules.items()
        }
        feats = mods["compute_features"](wavs)
        feats = mods["mean_var_norm"](feats, lens)
        return mods["embedding_model"](feats, lens)

    @torch.no_grad()
    def encode(self, wavs, lens=None):
        """Eval-mode student embeddings, for scoring (any one process)."""
        if lens is None:
            lens = torch.ones(wavs.shape[0], device=wavs.device)
        self.modules.eval()
        emb = self.embed(
            wavs.to(self.device), lens.to(self.device), unwrap=True
        )
        self.student_taps.pop()
        return emb

    def make_dataloader(
        self, dataset, stage, ckpt_prefix="dataloader-", **loader_kwargs
    ):
        """``Brain.make_dataloader``; remembers a training ``EpochDataset``.

        Its ``set_epoch`` is called at the start of every training epoch.
        """
        if stage == sb.Stage.TRAIN and hasattr(dataset, "set_epoch"):
            if loader_kwargs.get("persistent_workers"):
                raise ValueError(
                    "train_dataloader_opts: persistent_workers is not "
                    "supported (the workers would keep the first epoch's "
                    "crops); remove it"
                )
            self.train_dataset = dataset
        return super().make_dataloader(
            dataset, stage, ckpt_prefix, **loader_kwargs
        )

    def _train_loader_specifics(self, dataset, loader_kwargs):
        """Under DDP, the single-process sampler split between processes.

        SpeechBrain gives a shuffled DDP run a ``DistributedSampler`` (its
        own permutation); here every process draws the single-process
        permutation (``ReproducibleRandomSampler``, same seed and epoch)
        and takes every ``world_size``-th example of it, so that the
        examples of each optimiser step are those of a single-process run
        with ``batch_size * world_size``.
        """
        if (
            self.distributed_launch
            and loader_kwargs.get("shuffle")
            and loader_kwargs.get("sampler") is None
            and loader_kwargs.get("batch_sampler") is None
            and not isinstance(dataset, IterableDataset)
        ):
            loader_kwargs = dict(loader_kwargs)
            del loader_kwargs["shuffle"]
            seed = os.environ.get("SB_GLOBAL_SEED", 563375142)
            loader_kwargs["sampler"] = ReproducibleRandomSampler(
                dataset, seed=seed
            )
        return super()._train_loader_specifics(dataset, loader_kwargs)

    def _wrap_distributed(self):
        """``Brain._wrap_distributed``, without ``SyncBatchNorm`` on CPU.

        ``SyncBatchNorm`` only runs on accelerators; on CPU (gloo) every
        process normalises with the statistics of its own part of the
        batch, and DDP broadcasts the running statistics of process 0.
        Learnable distillation terms are then called through their DDP
        wrappers, so that their gradients are synchronised too.
        """
        if self.distributed_launch and self.device_type == "cpu":
            for name, module in self.modules.items():
                if any(p.requires_grad for p in module.parameters()):
                    self.modules[name] = DistributedDataParallel(
                        module,
                        find_unused_parameters=self.find_unused_parameters,
                    )
        else:
            super()._wrap_distributed()
        for term in self.terms:
            key = f"distill_{term.name}"
            if isinstance(term.fn, torch.nn.Module) and key in self.modules:
                term.wrapper = self.modules[key]

    @mark_as_saver
    def _save(self, path):
        """``Brain._save`` plus the training statistics of the epoch.

        Run by every process (it is registered with
        ``save_on_main_only=False``): under DDP the statistics of the
        epoch so far are summed over the processes and the running average
        loss averaged, and the main process writes them. On recovery the
        main process continues from the sums and the others from zero, so
        that every loss is counted once (see ``_recover``).
        """
        stats = getattr(self, "loss_stats", None) or {}
        keys = sorted(stats)
        values = [float(stats[k]) for k in keys] + [float(self.avg_train_loss)]
        size = world()[1]
        if size > 1:
            summed = torch.tensor(
                values, dtype=torch.float64, device=self.device
            )
            torch.distributed.all_reduce(summed)
            values = summed.tolist()
            values[-1] /= size
        if not if_main_process():
            return
        super()._save(path)
        with open(path, encoding="utf-8") as f:
            state = yaml.safe_load(f)
        state["avg_train_loss"] = values[-1]
        state["loss_stats"] = dict(zip(keys, values[:-1]))
        with open(path, "w", encoding="utf-8") as f:
            f.write(yaml.dump(state))

    @mark_as_loader
    def _recover(self, path, end_of_epoch):
        """``Brain._recover``; keeps the statistics of an unfinished epoch.

        The sums saved are those of all processes: the main process takes
        them, the others start from zero (``on_stage_start``).
        """
        super()._recover(path, end_of_epoch)
        with open(path, encoding="utf-8") as f:
            state = yaml.safe_load(f)
        stats = state.get("loss_stats")
        if end_of_epoch or not stats:
            self._recovered_stats = None
        elif world()[0] == 0:
            self._recovered_stats = stats
        else:
            self._recovered_stats = {k: 0.0 for k in stats}

    def compute_objectives(self, predictions, batch, stage):
        """Task loss plus the weighted distillation terms."""
        targets = batch.spk_id_encoded.data.view(-1)
        out = predictions["classifier_out"]
        loss = self.hparams.compute_cost(out.float(), targets.unsqueeze(1))
        if stage != sb.Stage.TRAIN:
            self.error_metrics.append(
                batch.id, out.reshape(len(targets), -1), targets
            )
            return loss
        # Accumulated in on_fit_batch_end, only when the loss is finite
        self._batch_terms = {"task": loss.detach()}
        if self.terms:
            batch_size = len(targets)
            available = dict(predictions)
            available.update(
                student_logits=self.logit_scale
                * out.reshape(batch_size, -1).float(),
                student_embedding=predictions["student_embedding"]
                .reshape(batch_size, -1)
                .float(),
                targets=targets,
                tau=self.tau,
            )
            if not self._inputs_checked:  # once: it reads device values
                self._check_logits(
                    available["student_logits"],
                    available.get("teacher_logits"),
                    targets,
                )
                self._inputs_checked = True
            for term in self.terms:
                value = term(available)
                self._batch_terms[term.name] = value.detach()
                loss = loss + self.kd_factor * term.weight * value
        return loss

    def on_fit_batch_start(self, batch, should_step):
        """Remembers the batch IDs (named if the loss is not finite) and
        the modules' buffers (BatchNorm statistics), restored if it is."""
        del should_step
        self._batch_ids = list(getattr(batch, "id", None) or [])
        self._batch_terms = {}
        if self._buffers_before is None:
            self._buffers_before = [
                b.detach().clone() for b in self.modules.buffers()
            ]

    def check_loss_isfinite(self, loss):
        """Records a non-finite loss; ``optimizers_step`` acts on it.

        Unlike ``Brain.check_loss_isfinite``, the batch never updates the
        model: its gradients are dropped and the BatchNorm statistics its
        forward pass updated are restored, on every process.
        """
        if torch.isfinite(loss):
            return
        self._nonfinite_here = True
        terms = ", ".join(
            f"{k}={float(v):.4g}" for k, v in self._batch_terms.items()
        )
        self.nonfinite_batches.append(
            (self.epoch, self.step, list(self._batch_ids), terms)
        )

    def optimizers_step(self):
        """``Brain.optimizers_step``, skipped after a non-finite loss.

        Under DDP the decision is shared, so that every process skips the
        same steps. After more than ``nonfinite_patience`` skipped steps in
        an epoch, raises ``ValueError`` naming the epoch, step and batch IDs.
        """
        skip = self._nonfinite_here
        if distributed():
            flag = torch.tensor(float(skip), device=self.device)
            torch.distributed.all_reduce(
                flag, op=torch.distributed.ReduceOp.MAX
            )
            skip = bool(flag.item())
        self._nonfinite_here = False
        before, self._buffers_before = self._buffers_before, None
        if not skip:
            super().optimizers_step()
            return
        self.zero_grad(set_to_none=True)
        with torch.no_grad():  # undo the forward's BatchNorm updates
            for buffer, value in zip(self.modules.buffers(), before or []):
                buffer.copy_(value)
        self.nonfinite_count += 1
        if self.nonfinite_batches:
            epoch, step, ids, terms = self.nonfinite_batches[-1]
            where = f"epoch {epoch}, step {step}, batch IDs {ids} ({terms})"
        else:
            where = f"epoch {self.epoch}, step {self.step}, on another process"
        message = f"Non-finite training loss at {where}"
        if self.nonfinite_count > self.nonfinite_patience:
            ckpt = getattr(self.checkpointer, "checkpoints_dir", None)
            raise ValueError(
                f"{message}. Stopped after {self.nonfinite_count} non-finite "
                f"batches this epoch (--nonfinite_patience="
                f"{self.nonfinite_patience}); no weights were updated with "
                "them and no checkpoint was written after them: the last "
                f"checkpoint (in {ckpt}) is kept. All: "
                f"{self.nonfinite_batches}"
            )
        logger.warning(
            "%s: batch skipped, no update (%d of --nonfinite_patience=%d)",
            message,
            self.nonfinite_count,
            self.nonfinite_patience,
        )

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """Adds the terms of a finite-loss batch to the epoch statistics."""
        del batch, outputs, should_step
        if not torch.isfinite(loss):
            return
        for key, value in self._batch_terms.items():
            self.loss_stats[key] += value
        self.loss_stats["steps"] += 1

    def on_stage_start(self, stage, epoch=None):
        """Resets the statistics; sets tau and the KD warm-up factor.

        After the recovery of an intra-epoch checkpoint (``self.step > 0``)
        the training statistics continue from the checkpointed ones.
        """
        self.loss_stats = {"task": 0.0, "steps": 0}
        for term in self.terms:
            self.loss_stats[term.name] = 0.0
        if stage == sb.Stage.TRAIN:
            if self.step > 0 and self._recovered_stats is not None:
                self.loss_stats.update(self._recovered_stats)
            self._recovered_stats = None
            self.nonfinite_batches = []
        if stage == sb.Stage.TRAIN and epoch is not None:
            self.epoch = epoch
            if self.train_dataset is not None:
                self.train_dataset.set_epoch(epoch)
            if self.tau_schedule is not None:
                tau = self.tau_schedule
                self.tau = tau(epoch) if callable(tau) else tau
                check_hyperparameter(
                    f"tau_schedule (at epoch {epoch})", self.tau, "tau"
                )
            if self.kd_warmup is not None:
                self.kd_factor = self.kd_warmup(epoch)
                if not 0 <= self.kd_factor <= 1:
                    raise ValueError(
                        f"kd_warmup gave {self.kd_factor} at epoch {epoch}, "
                        "expected a factor in [0, 1]"
                    )
        if stage != sb.Stage.TRAIN:
            self.error_metrics = MetricStats(
                metric=functools.partial(
                    sb.nnet.losses.classification_error, reduction="batch"
                ),
                n_jobs=1,
            )

    def _all_processes(self, sums, stage_loss):
        """The epoch's sums over every process under DDP (each process saw
        its part of the data), and the mean of their average losses."""
        if not distributed():
            return sums, stage_loss
        keys = sorted(sums)
        values = torch.tensor(
            [float(sums[k]) for k in keys] + [float(stage_loss)],
            dtype=torch.float64,
            device=self.device,
        )
        torch.distributed.all_reduce(values)
        values = values.tolist()
        world = torch.distributed.get_world_size()
        return dict(zip(keys, values[:-1])), values[-1] / world

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs, anneals the learning rate and checkpoints."""
        if stage == sb.Stage.TRAIN:
            sums, stage_loss = self._all_processes(self.loss_stats, stage_loss)
            steps = max(int(sums["steps"]), 1)
            self.train_stats = {"loss": stage_loss}
            for key, value in sums.items():
                if key != "steps":
                    self.train_stats[key] = float(value) / steps
            for term in self.terms:  # e.g. the FLOPs of a dynamic student
                extra = getattr(term.fn, "epoch_stats", None)
                if callable(extra):
                    for key, value in extra().items():
                        self.train_stats[f"{term.name}_{key}"] = value
            return
        stats = {
            "loss": stage_loss,
            "ErrorRate": self.error_metrics.summarize("average"),
        }
        if stage == sb.Stage.VALID:
            old_lr, new_lr = self.hparams.lr_annealing(epoch)
            sb.nnet.schedulers.update_learning_rate(self.optimizer, new_lr)
            epoch_stats = {"epoch": epoch, "lr": old_lr}
            if self.tau is not None:
                epoch_stats["tau"] = round(self.tau, 5)
            if self.terms:
                epoch_stats["kd_factor"] = self.kd_factor
            self.hparams.train_logger.log_stats(
                stats_meta=epoch_stats,
                train_stats=self.train_stats,
                valid_stats=stats,
            )
            if self.checkpointer is not None:
                self.checkpointer.save_and_keep_only(
                    meta={"ErrorRate": stats["ErrorRate"]},
                    min_keys=["ErrorRate"],
                )
        elif stage == sb.Stage.TEST:
            self.hparams.train_logger.log_stats(
                {"Epoch loaded": self.hparams.epoch_counter.current},
                test_stats=stats,
            )


# Every process runs KDBrain's saver (it sums the statistics of all).
register_checkpoint_hooks(KDBrain, save_on_main_only=False)
