"""Checkpoints that are complete or absent, written by one process.

- ``AtomicCheckpointer``: a SpeechBrain ``Checkpointer`` whose ``CKPT.yaml``
  is renamed into place only after every process has finished saving, so a
  run killed while saving never leaves a checkpoint that recovery would
  take and fail to load;
- ``ClassOrder``: the teacher's class order, checked on recovery;
- ``RandomState``: the random generators of *every* process, each process
  resuming its own streams.

Under ``torchrun`` only the main process writes files. Savers that need
the other processes (``RandomState`` here, ``KDBrain``'s statistics) are
registered with ``save_on_main_only=False`` and gather what they need
with collective operations before the main process writes; every process
calls the savers of a checkpoint in the same order
(``Checkpointer.save_checkpoint``), so the collectives match.
"""

import logging
import os
import random
import shutil

import numpy
import torch
from speechbrain.utils.checkpoints import (
    CKPT_PREFIX,
    METAFNAME,
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)
from speechbrain.utils.distributed import ddp_barrier, if_main_process

from speechbrain_kd.ddp import world
from speechbrain_kd.sb_private.checkpoints import PENDING_META, PendingMetafile

logger = logging.getLogger(__name__)


class AtomicCheckpointer(PendingMetafile):
    """A SpeechBrain ``Checkpointer`` whose checkpoints are complete or absent.

    SpeechBrain writes a checkpoint's ``CKPT.yaml`` first, then the files of
    the recoverables: a run killed while saving leaves a folder that
    recovery takes for a checkpoint and then fails to load. Here
    ``CKPT.yaml`` is written under a temporary name and renamed into place
    (atomically) once every process has finished with the checkpoint, so a
    half-written folder is not a checkpoint; such leftovers are removed at
    the next successful save. Same arguments as ``Checkpointer``; the
    recipe YAMLs name it as their ``checkpointer``::

        checkpointer: !new:speechbrain_kd.checkpointing.AtomicCheckpointer
            checkpoints_dir: !ref <save_folder>

    Example
    -------
    >>> import torch
    >>> from speechbrain_kd.checkpointing import AtomicCheckpointer
    >>> ckpt = AtomicCheckpointer(getfixture("tmpdir"),
    ...                           {"lin": torch.nn.Linear(2, 2)})
    >>> saved = ckpt.save_checkpoint()
    >>> sorted(p.name for p in saved.path.iterdir())
    ['CKPT.yaml', 'lin.ckpt']
    """

    def save_checkpoint(
        self, meta={}, end_of_epoch=True, name=None, verbosity=logging.INFO
    ):
        """Saves a checkpoint (see ``Checkpointer.save_checkpoint``)."""
        ckpt = super().save_checkpoint(meta, end_of_epoch, name, verbosity)
        # Every process has run its savers before the checkpoint is marked
        # complete...
        ddp_barrier()
        if ckpt is not None:  # the main process
            os.replace(ckpt.path / PENDING_META, ckpt.path / METAFNAME)
            self.remove_incomplete()
        # ... and every process sees it complete before going on (the
        # deletions of save_and_keep_only must agree on the list).
        ddp_barrier()
        return ckpt

    def remove_incomplete(self):
        """Deletes the folders of checkpoints whose saving was interrupted."""
        if not self.checkpoints_dir.is_dir():
            return
        for path in self.checkpoints_dir.iterdir():
            if (
                path.is_dir()
                and path.name.startswith(CKPT_PREFIX)
                and not (path / METAFNAME).exists()
                and (path / PENDING_META).exists()
            ):
                logger.warning("Removing incomplete checkpoint %s", path)
                shutil.rmtree(path, ignore_errors=True)


@register_checkpoint_hooks
class ClassOrder:
    """The teacher's class order, saved with every checkpoint of a student.

    On recovery, a checkpoint trained with another class order (another
    teacher) is an error rather than a silently wrong classifier.

    Arguments
    ---------
    labels : list of str
        The labels, in class-index order.
    source : str
        Where they come from (named in errors).

    Example
    -------
    >>> from speechbrain_kd.checkpointing import ClassOrder
    >>> path = getfixture("tmpdir") / "classes.ckpt"
    >>> ClassOrder(["a", "b"], "teacher 1")._save(path)
    >>> ClassOrder(["b", "a"], "teacher 2")._recover(path)
    Traceback (most recent call last):
    ...
    ValueError: ...trained with 2 classes in another order than teacher 2...
    """

    def __init__(self, labels, source="the teacher"):
        self.labels = [str(label) for label in labels]
        self.source = source

    @mark_as_saver
    def _save(self, path):
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(self.labels) + "\n")

    @mark_as_loader
    def _recover(self, path, end_of_epoch=True):
        del end_of_epoch
        with open(path, encoding="utf-8") as f:
            saved = f.read().splitlines()
        if saved != self.labels:
            first = next(
                (
                    i
                    for i, (a, b) in enumerate(zip(saved, self.labels))
                    if a != b
                ),
                min(len(saved), len(self.labels)),
            )
            raise ValueError(
                f"{path}: this checkpoint was trained with {len(saved)} "
                f"classes in another order than {self.source} "
                f"({len(self.labels)} classes; first difference at index "
                f"{first}). Use the teacher it was trained with, or another "
                "output_folder"
            )


def rng_state():
    """The global random generators of this process, as a dict."""
    state = {
        "torch": torch.get_rng_state(),
        "numpy": numpy.random.get_state(),
        "random": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    """Restores the generators saved by ``rng_state``."""
    torch.set_rng_state(state["torch"])
    numpy.random.set_state(state["numpy"])
    random.setstate(state["random"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


class RandomState:
    """The global random generators (torch, CUDA, numpy, random) of every
    process, saved with every checkpoint.

    A resumed run continues the random streams where the checkpoint left
    them, so waveform augmentation or dropout draw what an uninterrupted
    run draws (crops do not need it: ``speechbrain_kd.data.EpochDataset``).
    Under ``torchrun`` the states of all processes are gathered and written
    by the main process; on recovery each process takes its own (a run
    resumed with another number of processes takes them in rank order,
    with a warning, beyond which the streams start where process 0 was).

    Example
    -------
    >>> import torch
    >>> from speechbrain_kd.checkpointing import RandomState
    >>> path = getfixture("tmpdir") / "random.ckpt"
    >>> RandomState()._save(path)
    >>> a = torch.rand(2)
    >>> RandomState()._recover(path)
    >>> bool((torch.rand(2) == a).all())
    True
    """

    @mark_as_saver
    def _save(self, path):
        size = world()[1]
        states = [rng_state()]
        if size > 1:
            states = [None] * size
            torch.distributed.all_gather_object(states, rng_state())
        if if_main_process():
            torch.save({"processes": states}, path)

    @mark_as_loader
    def _recover(self, path, end_of_epoch=True):
        del end_of_epoch
        state = torch.load(path, weights_only=False)
        states = state.get("processes", [state])  # older: one process
        rank, size = world()
        if len(states) != size:
            logger.warning(
                "%s holds the random state of %d processes, this run has "
                "%d: the random streams do not continue exactly",
                path,
                len(states),
                size,
            )
        set_rng_state(states[rank] if rank < len(states) else states[0])


# Every process runs RandomState's saver (it gathers the states).
register_checkpoint_hooks(RandomState, save_on_main_only=False)


class TermStatistics:
    """The epoch statistics of distillation terms, across an intra-epoch
    checkpoint.

    A term whose ``fn`` has ``stats_state()`` (``{name: tensor}`` of sums)
    and ``load_stats_state(state)`` (e.g. ``objectives.trkd.TRKDLoss``) has
    its sums saved with every checkpoint, summed over the processes under
    DDP; an intra-epoch recovery gives them to the main process and zeros
    to the others, so the epoch's figures count every batch once. At the
    end of an epoch the terms have reset their sums: nothing to recover.

    Arguments
    ---------
    terms : list of speechbrain_kd.terms.DistillTerm
        The Brain's terms (those without the methods are skipped).

    Example
    -------
    >>> from speechbrain_kd.terms import DistillTerm
    >>> from speechbrain_kd.objectives.trkd import TRKDLoss
    >>> term = DistillTerm("trkd", TRKDLoss())
    >>> s, t = torch.randn(4, 10), torch.randn(4, 10)
    >>> _ = term.fn(s, t, torch.tensor([0, 1, 2, 3]), tau=0.5)
    >>> path = getfixture("tmpdir") / "stats.ckpt"
    >>> TermStatistics([term])._save(path)
    >>> fresh = DistillTerm("trkd", TRKDLoss())
    >>> TermStatistics([fresh])._recover(path, end_of_epoch=False)
    >>> fresh.fn.epoch_stats() == term.fn.epoch_stats()
    True
    """

    def __init__(self, terms):
        self.terms = [t for t in terms if hasattr(t.fn, "stats_state")]

    @mark_as_saver
    def _save(self, path):
        states = {}
        for term in self.terms:
            state = dict(term.fn.stats_state())
            for key, value in sorted(state.items()):
                if world()[1] > 1:
                    value = value.clone()
                    torch.distributed.all_reduce(value)
                state[key] = value.cpu()
            states[term.name] = state
        if if_main_process():
            torch.save(states, path)

    @mark_as_loader
    def _recover(self, path, end_of_epoch=True):
        if end_of_epoch:
            return
        states = torch.load(path)
        for term in self.terms:
            state = states.get(term.name, {})
            if world()[0] != 0:
                state = {k: torch.zeros_like(v) for k, v in state.items()}
            term.fn.load_stats_state(state)


# Every process runs TermStatistics's saver (it sums the statistics).
register_checkpoint_hooks(TermStatistics, save_on_main_only=False)
