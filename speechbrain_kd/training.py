"""From a loaded recipe YAML to a trained Brain: ``make_brain``, ``fit``.

The recipe scripts (``recipes/*/train_teacher.py``, ``train_kd.py``) run::

    teacher = load_teacher(hparams, run_opts)          # teachers
    datasets = prepare_datasets(hparams, label_encoder)  # data
    brain = make_brain(hparams, run_opts, teacher)     # here
    fit(brain, datasets, hparams)                      # here
    evaluate_and_publish(brain, ...)                   # publish
"""

from speechbrain_kd.brain import SpeakerBrain
from speechbrain_kd.kd_brain import KDBrain
from speechbrain_kd.teacher_cache import prepare_teacher_cache


def make_brain(hparams, run_opts, teacher=None):
    """The recipe's Brain from the loaded YAML: a ``KDBrain`` with a
    teacher or ``distill_terms``, else a ``SpeakerBrain`` (teachers).

    In embedding-only mode (see ``student_label_encoder``) the student has
    its own classes, so ``out_n_neurons`` is not checked against the
    teacher's class count (it was checked against the training speakers).
    """
    if hparams.get("embedding_only"):
        hparams = dict(hparams, out_n_neurons=None)
    kwargs = dict(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    if teacher is None and not hparams.get("distill_terms"):
        return SpeakerBrain(**kwargs)
    return KDBrain(teacher=teacher, **kwargs)


def fit(brain, datasets, hparams):
    """Trains, then loads the checkpoint with the lowest error rate.

    With ``teacher_cache: {enabled: True}``, the teacher's outputs are read from
    the cache (built first if needed: ``speechbrain_kd.teacher_cache``)
    and the teacher is off the device during training.
    """
    spec = hparams.get("teacher_cache") or {}
    teacher = getattr(brain, "teacher", None)
    if spec.get("enabled") and teacher is not None and brain.terms:
        brain.use_teacher_cache(
            prepare_teacher_cache(
                hparams,
                brain.teacher,
                brain.teacher.label_encoder,
                progressbar=not brain.noprogressbar,
            )
        )
    brain.fit(
        brain.hparams.epoch_counter,
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=hparams["train_dataloader_opts"],
        valid_loader_kwargs=hparams["valid_dataloader_opts"],
    )
    brain.checkpointer.recover_if_possible(min_key="ErrorRate")
    if teacher is not None:
        brain.teacher_to_device()
