"""``SpeakerBrain``, the speaker classifier that every run trains.

``SpeakerBrain`` trains teachers and no-KD students as SpeechBrain's
speaker recipes do: waveform augmentation (``wav_augment``), features,
embedding, cosine classifier, AAM-softmax task loss, error rate, learning
rate annealing, logging and checkpoints. ``KDBrain``
(``speechbrain_kd.kd_brain``, also importable from here: YAMLs may name
``speechbrain_kd.brain.KDBrain``) adds a frozen teacher and the
distillation terms.

The modules these Brains expect (``modules`` of the YAML) are
``compute_features``, ``mean_var_norm``, ``embedding_model`` and
``classifier``, as in SpeechBrain's speaker recipes.

Reliability (built on ``speechbrain.Brain``):

- a non-finite training loss never updates the weights
  (``speechbrain_kd.guards.NonFiniteGuard``);
- an interrupted run (even ``kill -9``) resumes from its last checkpoint,
  end-of-epoch or intra-epoch (``--ckpt_interval_steps`` /
  ``--ckpt_interval_minutes``), with the same tau, learning rate, data
  order and crops, and ends with the same figures as an uninterrupted run:
  the per-term training statistics are checkpointed with the step, the
  crops of an ``EpochDataset`` depend only on (seed, epoch, ID), and an
  ``AtomicCheckpointer`` (``speechbrain_kd.checkpointing``, the recipes'
  ``checkpointer``) never leaves a half-written checkpoint;
- under ``torchrun`` the examples of every optimiser step are those of a
  single-process run with ``batch_size`` times the number of processes
  (``speechbrain_kd.sb_private.brain.DistributedPlumbing``);
- ``KDBrain`` checks the teacher/student class counts, the teacher's
  label encoder, the class order of a checkpoint and the range of tau and
  of the distillation hyperparameters, with errors naming the key.
"""

import functools
import logging

import speechbrain as sb
import torch
from speechbrain.utils.metric_stats import MetricStats

from speechbrain_kd.augment import augment_batch
from speechbrain_kd.checkpointing import AtomicCheckpointer, RandomState
from speechbrain_kd.ddp import sum_over_processes
from speechbrain_kd.guards import NonFiniteGuard
from speechbrain_kd.model_size import unwrap_module
from speechbrain_kd.sb_private.brain import (
    DistributedPlumbing,
    EpochStatisticsCheckpoint,
)

logger = logging.getLogger(__name__)


class SpeakerBrain(
    DistributedPlumbing, EpochStatisticsCheckpoint, NonFiniteGuard, sb.Brain
):
    """Trains a speaker-embedding model with a speaker-classification loss.

    The ``hparams`` it reads: ``compute_cost`` (the task loss, on the
    classifier's cosines), ``lr_annealing``, ``train_logger``,
    ``logit_scale`` (the scale of the cosine classifier's outputs, default
    30), ``wav_augment`` (optional, ``speechbrain_kd.augment``).

    Arguments
    ---------
    modules, opt_class, hparams, run_opts, checkpointer
        As ``speechbrain.Brain``. The checkpointer should be an
        ``AtomicCheckpointer`` (a warning says so otherwise); the random
        state of every process is added to it.
    """

    terms = ()  # distillation terms: none (see KDBrain)

    def __init__(
        self,
        modules=None,
        opt_class=None,
        hparams=None,
        run_opts=None,
        checkpointer=None,
    ):
        super().__init__(modules, opt_class, hparams, run_opts, checkpointer)
        self.logit_scale = float(self.hparams_get("logit_scale", 30.0))
        self.train_dataset = None  # an EpochDataset, set by make_dataloader
        self.loss_stats = {}
        if checkpointer is not None:
            self.add_checkpoint_state("random_state", RandomState())
            if not isinstance(checkpointer, AtomicCheckpointer):
                logger.warning(
                    "The checkpointer is a %s, not an AtomicCheckpointer "
                    "(speechbrain_kd.checkpointing): a run killed while "
                    "saving can leave a checkpoint that does not load",
                    type(checkpointer).__name__,
                )

    def hparams_get(self, key, default=None):
        """``hparams[key]`` of the YAML, or ``default``."""
        return getattr(self.hparams, key, default)

    def add_checkpoint_state(self, name, obj):
        """Adds ``obj`` to the checkpointer (optional on load: checkpoints
        of earlier versions load without it), unless it holds ``name``."""
        if name not in self.checkpointer.recoverables:
            self.checkpointer.add_recoverable(name, obj, optional_load=True)

    def compute_forward(self, batch, stage):
        """Augments (training only), embeds and classifies.

        Returns
        -------
        dict
            ``classifier_out`` (cosines), ``student_embedding``
            ``[batch, 1, dim]`` and ``lengths``.
        """
        batch = batch.to(self.device)
        augment = self.hparams_get("wav_augment")
        if stage == sb.Stage.TRAIN and augment is not None:
            batch = augment_batch(batch, augment)
        wavs, lens = batch.sig
        emb = self.embed(wavs, lens)
        return {
            "classifier_out": self.modules.classifier(emb),
            "student_embedding": emb,
            "lengths": lens,
        }

    def embed(self, wavs, lens, unwrap=False):
        """Embeddings ``[batch, 1, dim]`` (as ``EncoderClassifier``).

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
        """Eval-mode embeddings, for scoring (any one process)."""
        if lens is None:
            lens = torch.ones(wavs.shape[0], device=wavs.device)
        self.modules.eval()
        return self.embed(
            wavs.to(self.device), lens.to(self.device), unwrap=True
        )

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

    def compute_objectives(self, predictions, batch, stage):
        """The task loss; the error rate outside training."""
        targets = batch.spk_id_encoded.data.view(-1)
        out = predictions["classifier_out"]
        loss = self.hparams.compute_cost(out.float(), targets.unsqueeze(1))
        if stage != sb.Stage.TRAIN:
            self.error_metrics.append(
                batch.id, out.reshape(len(targets), -1), targets
            )
        else:  # accumulated in on_fit_batch_end, if the loss is finite
            self._batch_terms = {"task": loss.detach()}
        return loss

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """Adds the terms of a finite-loss batch to the epoch statistics."""
        del batch, outputs, should_step
        if not torch.isfinite(loss):
            return
        for key, value in self._batch_terms.items():
            self.loss_stats[key] += value
        self.loss_stats["steps"] += 1

    def on_stage_start(self, stage, epoch=None):
        """Resets the statistics (or continues an interrupted epoch's).

        After the recovery of an intra-epoch checkpoint (``self.step > 0``)
        the training statistics continue from the checkpointed ones.
        """
        self.loss_stats = {"task": 0.0, "steps": 0}
        for term in self.terms:
            self.loss_stats[term.name] = 0.0
        if stage == sb.Stage.TRAIN:
            if self.step > 0 and self.recovered_stats is not None:
                self.loss_stats.update(self.recovered_stats)
            self.recovered_stats = None
            self.nonfinite_batches = []
            if epoch is not None:
                self.epoch = epoch
                if self.train_dataset is not None:
                    self.train_dataset.set_epoch(epoch)
        else:
            self.error_metrics = MetricStats(
                metric=functools.partial(
                    sb.nnet.losses.classification_error, reduction="batch"
                ),
                n_jobs=1,
            )

    def epoch_meta(self, epoch):
        """What the epoch's log line starts with (``epoch``, ``lr``)."""
        return {"epoch": epoch}

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Training: the epoch's statistics. Validation: anneals the
        learning rate, logs the epoch and checkpoints (keeping the lowest
        error rate and the latest)."""
        if stage == sb.Stage.TRAIN:
            sums, stage_loss = sum_over_processes(
                self.loss_stats, stage_loss, self.device
            )
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
        if stage != sb.Stage.VALID:  # the recipes score trial lists instead
            return
        stats = {
            "loss": stage_loss,
            "ErrorRate": self.error_metrics.summarize("average"),
        }
        old_lr, new_lr = self.hparams.lr_annealing(epoch)
        sb.nnet.schedulers.update_learning_rate(self.optimizer, new_lr)
        meta = {"epoch": epoch, "lr": old_lr}
        meta.update(self.epoch_meta(epoch))
        self.hparams.train_logger.log_stats(
            stats_meta=meta,
            train_stats=self.train_stats,
            valid_stats=stats,
        )
        if self.checkpointer is not None:
            self.checkpointer.save_and_keep_only(
                meta={"ErrorRate": stats["ErrorRate"]},
                min_keys=["ErrorRate"],
            )


def __getattr__(name):
    """``KDBrain``, imported from ``speechbrain_kd.kd_brain`` on first use.

    Lazy, because ``speechbrain_kd.kd_brain`` imports ``SpeakerBrain`` from
    this module: ``from speechbrain_kd.brain import KDBrain`` and
    ``!name:speechbrain_kd.brain.KDBrain`` work whichever module is imported
    first.

    Example
    -------
    >>> from speechbrain_kd.brain import KDBrain
    >>> from speechbrain_kd import kd_brain
    >>> KDBrain is kd_brain.KDBrain
    True
    """
    if name == "KDBrain":
        from speechbrain_kd.kd_brain import KDBrain

        return KDBrain
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
