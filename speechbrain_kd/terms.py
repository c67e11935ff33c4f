"""Distillation terms: the weighted losses of ``distill_terms``, their inputs.

A recipe YAML lists its terms::

    distill_terms:
        trkd:
            fn: !new:speechbrain_kd.objectives.trkd.TRKDLoss
                T: 4.0
            weight: 1.0

``build_terms`` turns that mapping into ``DistillTerm`` objects; each
``fn`` receives, by name, whichever of these inputs its signature asks for
(arguments already bound in the YAML are left alone). ``KDBrain``
computes them (``speechbrain_kd.brain``):

- ``student_logits``: the student's cosine classifier output times
  ``logit_scale``; ``teacher_logits``: the teacher's, times
  ``teacher_logit_scale`` (``FrozenTeacher.forward``, or the teacher cache
  in cached runs); ``[batch, classes]``;
- ``targets``: ``[batch]`` class indices (the teacher's label encoder);
- ``student_embedding``, ``teacher_embedding``: ``[batch, dim]``;
- ``lengths``: ``[batch]`` relative lengths of the waveforms;
- ``tau``: the current value of ``tau_schedule`` (set every step);
- ``student_<alias>`` / ``teacher_<alias>``: outputs of the sub-layers named
  in ``student_taps`` / ``teacher_taps`` (``{alias: submodule path}``),
  recorded with forward hooks (``speechbrain_kd.taps.LayerTaps``); a
  ``fn`` with ``**kwargs`` receives all of them.

A term whose ``fn`` is a ``torch.nn.Module`` (``!new:``, e.g. a loss with a
projection head) is trained with the student: ``KDBrain`` adds it to
``modules`` as ``distill_<name>`` (optimiser, device, DDP) and to the
checkpointer. A term may need no tensor input at all (e.g.
``objectives.complexity.ComplexityLoss``); one with an ``epoch_stats()``
method adds its dict to the training statistics logged every epoch.
"""

import functools
import inspect
import math
import numbers

import torch

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
    >>> from speechbrain_kd.terms import check_hyperparameter
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
