"""Overrides of ``speechbrain.Brain``'s private methods, as two mixins.

- ``DistributedPlumbing``: ``Brain._train_loader_specifics`` (the sampler
  of a shuffled ``torchrun`` run) and ``Brain._wrap_distributed`` (no
  ``SyncBatchNorm`` on CPU, learnable distillation terms called through
  their DDP wrappers);
- ``EpochStatisticsCheckpoint``: ``Brain._save`` / ``Brain._recover`` (the
  Brain's own checkpoint hooks) also save the training statistics of an
  unfinished epoch, summed over the processes.

``speechbrain_kd.brain.SpeakerBrain`` mixes both in. Their signatures are
checked against the installed SpeechBrain by ``tests/test_sb_private.py``
(see ``speechbrain_kd.sb_private.PRIVATE_API``).
"""

import os

import speechbrain as sb
import torch
import yaml
from speechbrain.dataio.sampler import ReproducibleRandomSampler
from speechbrain.utils.checkpoints import (
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)
from speechbrain.utils.distributed import if_main_process
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import IterableDataset

from speechbrain_kd.ddp import sum_over_processes, world


class DistributedPlumbing(sb.Brain):
    """``torchrun`` runs that see the examples of a single-process run.

    Under DDP the examples of each optimiser step are those of a
    single-process run with ``batch_size`` times the number of processes
    (same sampler on every process, split between them); on CPU (gloo)
    the BatchNorm layers are not converted to ``SyncBatchNorm`` (CUDA
    only). Learnable distillation terms (``self.terms`` whose ``fn`` is a
    module, in ``modules`` as ``distill_<name>``) are then called through
    their DDP wrappers.
    """

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
        for term in getattr(self, "terms", ()):
            key = f"distill_{term.name}"
            if isinstance(term.fn, torch.nn.Module) and key in self.modules:
                term.wrapper = self.modules[key]


class EpochStatisticsCheckpoint(sb.Brain):
    """The Brain's checkpoint also holds the statistics of the epoch so far.

    ``self.loss_stats`` (``{name: sum}``, kept by the Brain) is saved with
    every checkpoint and, after the recovery of an intra-epoch checkpoint,
    put in ``self.recovered_stats`` for the Brain to continue from.
    """

    recovered_stats = None

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
        stats = {k: float(v) for k, v in stats.items()}
        stats, avg = sum_over_processes(
            stats, float(self.avg_train_loss), self.device
        )
        if not if_main_process():
            return
        super()._save(path)
        with open(path, encoding="utf-8") as f:
            state = yaml.safe_load(f)
        state["avg_train_loss"] = avg
        state["loss_stats"] = stats
        with open(path, "w", encoding="utf-8") as f:
            f.write(yaml.dump(state))

    @mark_as_loader
    def _recover(self, path, end_of_epoch):
        """``Brain._recover``; keeps the statistics of an unfinished epoch.

        The sums saved are those of all processes: the main process takes
        them, the others start from zero.
        """
        super()._recover(path, end_of_epoch)
        with open(path, encoding="utf-8") as f:
            state = yaml.safe_load(f)
        stats = state.get("loss_stats")
        if end_of_epoch or not stats:
            self.recovered_stats = None
        elif world()[0] == 0:
            self.recovered_stats = stats
        else:
            self.recovered_stats = {k: 0.0 for k in stats}


# Every process runs the saver (it sums the statistics of all).
register_checkpoint_hooks(EpochStatisticsCheckpoint, save_on_main_only=False)
