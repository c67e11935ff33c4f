"""``KDBrain``: a ``SpeakerBrain`` that distils a frozen teacher.

``KDBrain`` adds a frozen teacher and the ``distill_terms`` of the YAML
(``speechbrain_kd.terms``) to the speaker classifier of
``speechbrain_kd.brain.SpeakerBrain``::

    loss = task loss + kd_factor * sum(weight * term(inputs))

In training, ``KDBrain.compute_forward`` returns the student's outputs
(classifier, embedding, tapped layers) and the teacher's (logits,
embedding, taps: ``FrozenTeacher.forward``, or the teacher cache), and
``compute_objectives`` scales the student's cosines by ``logit_scale``
and hands every term the inputs it names. ``tau`` (``tau_schedule``) and
``kd_factor`` (``kd_warmup``) are set before every training step from the
run's progress (``speechbrain_kd.schedules``). Teacher/student class
counts, the teacher's label encoder, the class order of a checkpoint and
the range of tau and of the distillation hyperparameters are checked, with
errors naming the key.

``speechbrain_kd.brain`` re-exports it: YAMLs may name it
``speechbrain_kd.brain.KDBrain``.
"""

import speechbrain as sb
import torch

from speechbrain_kd.brain import SpeakerBrain
from speechbrain_kd.checkpointing import ClassOrder, TermStatistics
from speechbrain_kd.model_size import unwrap_module
from speechbrain_kd.taps import LayerTaps
from speechbrain_kd.terms import (
    build_terms,
    check_hyperparameter,
    provided_inputs,
)


class KDBrain(SpeakerBrain):
    """Trains a speaker-embedding student, optionally from a frozen teacher.

    The ``hparams`` it reads besides ``SpeakerBrain``'s: ``distill_terms``
    (``speechbrain_kd.terms``), ``student_taps`` / ``teacher_taps``,
    ``tau_schedule`` (a number, a schedule with ``at_step`` such as
    ``speechbrain_kd.schedules.TauCurriculum``, set before every step, or
    a callable of the epoch), ``kd_warmup`` (the same, giving a factor in
    [0, 1]),
    ``teacher_source`` (named in errors), ``out_n_neurons`` (checked
    against the teacher's classes) and ``embedding_only`` (the student has
    its own classes: the teacher's logits are dropped,
    ``speechbrain_kd.teachers.student_label_encoder``).

    Arguments
    ---------
    teacher : speechbrain_kd.teachers.FrozenTeacher, optional
        The teacher; kept outside ``modules`` (not optimised, not wrapped in
        DDP, never put in train mode).
    *args, **kwargs
        As ``SpeakerBrain``.
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
        self.terms = build_terms(
            hparams.get("distill_terms"), provided_inputs(hparams)
        )
        if self.terms and teacher is None:
            raise ValueError("distill_terms are set but no teacher was given")
        # Learnable terms (projection heads...) train with the student.
        modules = dict(modules or {})
        learnable = {
            f"distill_{term.name}": term.fn
            for term in self.terms
            if isinstance(term.fn, torch.nn.Module)
        }
        modules.update(learnable)
        super().__init__(modules, opt_class, hparams, run_opts, checkpointer)
        self.teacher = teacher
        self.teacher_cache = None  # set by use_teacher_cache
        self.student_taps = LayerTaps(
            unwrap_module(self.modules.embedding_model),
            hparams.get("student_taps"),
        )
        self.tau_schedule = hparams.get("tau_schedule")
        self.kd_warmup = hparams.get("kd_warmup")
        self.tau = None
        self.kd_factor = 1.0
        # the schedules' total of steps (fit and make_dataloader set them)
        self.train_steps_per_epoch = None
        counter = hparams.get("epoch_counter")
        self.total_epochs = getattr(counter, "limit", None)
        if self.tau_schedule is not None and not callable(self.tau_schedule):
            check_hyperparameter("tau_schedule", self.tau_schedule, "tau")
        self.teacher_source = str(hparams.get("teacher_source", "teacher"))
        self._inputs_checked = False
        if teacher is not None:
            teacher.to(self.device)
            teacher.eval()
            self._check_teacher_classes(hparams.get("out_n_neurons"))
        if checkpointer is None:
            return
        for name, fn in learnable.items():
            if name not in checkpointer.recoverables:
                checkpointer.add_recoverable(name, fn)
        self.add_checkpoint_state("term_statistics", TermStatistics(self.terms))
        if teacher is not None and not hparams.get("embedding_only"):
            encoder = teacher.label_encoder
            labels = [encoder.ind2lab[i] for i in range(len(encoder))]
            self.add_checkpoint_state(
                "teacher_classes",
                ClassOrder(labels, f"the teacher {self.teacher_source}"),
            )

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

    def _check_first_batch(self, student_logits, teacher_logits, targets):
        """Clear error when the targets are not the student's class indices
        or the teacher's logits are not over the student's classes (first
        batch only: the range check synchronises the host with the
        device). The objectives check shapes at every call
        (``objectives.kd.check_logits``)."""
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
        """Student outputs (and taps); in training, the teacher's too.

        Returns
        -------
        dict
            ``SpeakerBrain``'s outputs, ``student_<alias>`` of the taps and,
            in training with terms, ``teacher_logits``,
            ``teacher_embedding`` and ``teacher_<alias>`` (the teacher's
            outputs on the same augmented batch, or the teacher cache's).
        """
        batch = batch.to(self.device)
        preds = super().compute_forward(batch, stage)
        for alias, value in self.student_taps.pop().items():
            preds[f"student_{alias}"] = value
        if self.teacher is None or stage != sb.Stage.TRAIN or not self.terms:
            return preds
        if self.teacher_cache is not None:  # no teacher forward pass
            outputs = self.teacher_cache.read(
                batch.cache_index, batch.view, self.device
            )
        else:
            outputs = self.teacher(*batch.sig)
        for key, value in outputs.items():
            preds[f"teacher_{key}"] = value
        if self.hparams_get("embedding_only", False):
            # The teacher's classes are not the student's: only its
            # embedding is distilled.
            preds.pop("teacher_logits", None)
        return preds

    @torch.no_grad()
    def encode(self, wavs, lens=None):
        """Eval-mode student embeddings, for scoring (any one process)."""
        emb = super().encode(wavs, lens)
        self.student_taps.pop()
        return emb

    def compute_objectives(self, predictions, batch, stage):
        """Task loss plus the weighted distillation terms."""
        loss = super().compute_objectives(predictions, batch, stage)
        if stage != sb.Stage.TRAIN or not self.terms:
            return loss
        targets = batch.spk_id_encoded.data.view(-1)
        batch_size = len(targets)
        available = dict(predictions)
        out = predictions["classifier_out"]
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
            self._check_first_batch(
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

    def fit(self, epoch_counter, train_set, *args, **kwargs):
        """``Brain.fit``; remembers the number of epochs (the schedules'
        total of steps)."""
        self.total_epochs = getattr(epoch_counter, "limit", None)
        if isinstance(train_set, torch.utils.data.DataLoader):
            self.train_steps_per_epoch = len(train_set)
        return super().fit(epoch_counter, train_set, *args, **kwargs)

    def make_dataloader(
        self, dataset, stage, ckpt_prefix="dataloader-", **loader_kwargs
    ):
        """``SpeakerBrain.make_dataloader``; remembers the training loader's
        length (the optimiser steps of an epoch, per process)."""
        loader = super().make_dataloader(
            dataset, stage, ckpt_prefix, **loader_kwargs
        )
        if stage == sb.Stage.TRAIN:
            self.train_steps_per_epoch = len(loader)
        return loader

    def optimiser_step(self, batches_done):
        """``(step, total_steps)``: the 0-based optimiser step of the batch
        after ``batches_done`` batches of this epoch, and the run's total
        (``None, None`` when the loader length is unknown)."""
        per_epoch = self.train_steps_per_epoch
        if per_epoch is None:
            return None, None
        accumulation = max(1, int(self.grad_accumulation_factor))
        batch = (self.epoch - 1) * per_epoch + batches_done
        epochs = self.total_epochs
        total = None if epochs is None else epochs * per_epoch // accumulation
        return batch // accumulation, total

    def _scheduled(self, name, schedule, batches_done):
        """The value of ``schedule`` (a number, a schedule with ``at_step``
        or a callable of the epoch) for the next training step."""
        if not callable(schedule):
            return schedule
        if not hasattr(schedule, "at_step"):
            return schedule(self.epoch)
        step, total = self.optimiser_step(batches_done)
        if step is None:
            raise ValueError(
                f"{name} is a schedule in training steps but the length of "
                "the training loader is unknown: train with KDBrain.fit"
            )
        return schedule.at_step(step, total, self.epoch)

    def set_schedules(self, batches_done):
        """Sets tau and the KD warm-up factor for the training step after
        ``batches_done`` batches of this epoch."""
        where = f"at epoch {self.epoch}, step {batches_done + 1}"
        if self.tau_schedule is not None:
            self.tau = self._scheduled(
                "tau_schedule", self.tau_schedule, batches_done
            )
            check_hyperparameter(f"tau_schedule ({where})", self.tau, "tau")
        if self.kd_warmup is not None:
            self.kd_factor = self._scheduled(
                "kd_warmup", self.kd_warmup, batches_done
            )
            if not 0 <= self.kd_factor <= 1:
                raise ValueError(
                    f"kd_warmup gave {self.kd_factor} {where}, expected a "
                    "factor in [0, 1]"
                )

    def on_fit_batch_start(self, batch, should_step):
        """``SpeakerBrain.on_fit_batch_start``; sets the schedules."""
        super().on_fit_batch_start(batch, should_step)
        self.set_schedules(self.step - 1)  # Brain counts this batch already

    def on_stage_start(self, stage, epoch=None):
        """``SpeakerBrain.on_stage_start``; sets tau and the KD warm-up
        factor of the first step of a training epoch."""
        super().on_stage_start(stage, epoch)
        if stage != sb.Stage.TRAIN or epoch is None:
            return
        self.set_schedules(self.step)  # > 0 when resumed inside the epoch

    def epoch_meta(self, epoch):
        """The log line also shows tau and, with terms, the KD factor (at
        the epoch's last step)."""
        meta = {}
        if self.tau is not None:
            meta["tau"] = round(self.tau, 5)
        if self.terms:
            meta["kd_factor"] = self.kd_factor
        return meta
