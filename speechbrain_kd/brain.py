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
  recorded with forward hooks (``speechbrain_kd.taps.LayerTaps``).

A term whose ``fn`` is a ``torch.nn.Module`` (``!new:``, e.g. a loss with a
projection head) is trained with the student: it joins ``modules`` as
``distill_<name>`` (optimiser, device, DDP) and the checkpointer.

The modules this Brain expects (``modules`` of the YAML) are
``compute_features``, ``mean_var_norm``, ``embedding_model`` and
``classifier`` (a cosine classifier whose outputs times ``logit_scale`` are
the student logits), as in SpeechBrain's speaker recipes.
"""

import functools
import inspect
import logging
import numbers

import speechbrain as sb
import torch
from speechbrain.utils.metric_stats import MetricStats

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
        self.inputs = [
            p.name for p in params if p.name in provided and p.name not in bound
        ]

    def __call__(self, available):
        """The unweighted loss, given a dict of the available inputs."""
        missing = [k for k in self.inputs if available.get(k) is None]
        if missing:
            raise ValueError(
                f"distill_terms[{self.name}] needs {missing}, which this run "
                "does not compute (no teacher, or no tau_schedule?)"
            )
        return self.fn(**{k: available[k] for k in self.inputs})


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
            for key, value in self.teacher(wavs, lens).items():
                preds[f"teacher_{key}"] = value
        preds["lengths"] = lens
        return preds

    def embed(self, wavs, lens):
        """Student embeddings ``[batch, 1, dim]`` (as ``EncoderClassifier``)."""
        feats = self.modules.compute_features(wavs)
        feats = self.modules.mean_var_norm(feats, lens)
        return self.modules.embedding_model(feats, lens)

    @torch.no_grad()
    def encode(self, wavs, lens=None):
        """Eval-mode student embeddings, for scoring."""
        if lens is None:
            lens = torch.ones(wavs.shape[0], device=wavs.device)
        self.modules.eval()
        emb = self.embed(wavs.to(self.device), lens.to(self.device))
        self.student_taps.pop()
        return emb

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
        self.loss_stats["task"] += loss.detach()
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
            for term in self.terms:
                value = term(available)
                self.loss_stats[term.name] += value.detach()
                loss = loss + self.kd_factor * term.weight * value
        self.loss_stats["steps"] += 1
        return loss

    def on_stage_start(self, stage, epoch=None):
        """Resets the statistics; sets tau and the KD warm-up factor."""
        self.loss_stats = {"task": 0.0, "steps": 0}
        for term in self.terms:
            self.loss_stats[term.name] = 0.0
        if stage == sb.Stage.TRAIN and epoch is not None:
            if self.tau_schedule is not None:
                self.tau = self.tau_schedule(epoch)
            if self.kd_warmup is not None:
                self.kd_factor = self.kd_warmup(epoch)
        if stage != sb.Stage.TRAIN:
            self.error_metrics = MetricStats(
                metric=functools.partial(
                    sb.nnet.losses.classification_error, reduction="batch"
                ),
                n_jobs=1,
            )

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs, anneals the learning rate and checkpoints."""
        if stage == sb.Stage.TRAIN:
            steps = max(int(self.loss_stats["steps"]), 1)
            self.train_stats = {"loss": stage_loss}
            for key, value in self.loss_stats.items():
                if key != "steps":
                    self.train_stats[key] = float(value) / steps
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
