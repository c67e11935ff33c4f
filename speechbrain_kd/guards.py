"""A non-finite training loss never updates the model: ``NonFiniteGuard``.

SpeechBrain's ``Brain.check_loss_isfinite`` skips the optimiser step of a
non-finite loss but keeps the BatchNorm statistics its forward pass
updated, and names neither the batch nor the loss terms. Here the batch
is skipped with a warning naming the epoch, the step, the batch IDs and
the value of every term (``self._batch_terms``, filled by the Brain's
``compute_objectives``), the buffers are restored, the decision is shared
between ``torchrun`` processes, and after ``--nonfinite_patience`` such
batches in an epoch (SpeechBrain's option, default 3; 0 stops at the
first) training stops before any checkpoint is written, so the last
checkpoint is a good one.
"""

import logging

import speechbrain as sb
import torch

from speechbrain_kd.ddp import distributed

logger = logging.getLogger(__name__)


class NonFiniteGuard(sb.Brain):
    """Mixin: skips (and names) the optimiser steps of non-finite losses.

    The Brain using it sets ``self.epoch`` at the start of every training
    epoch, fills ``self._batch_terms`` (``{term: value}``) in
    ``compute_objectives`` and empties ``self.nonfinite_batches`` at the
    start of every training epoch.
    """

    epoch = None
    _nonfinite_here = False  # this step's loss was not finite
    _buffers_before = None  # the buffers before this step
    _batch_ids = ()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.nonfinite_batches = []  # (epoch, step, ids, terms) this epoch
        self._batch_terms = {}

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
