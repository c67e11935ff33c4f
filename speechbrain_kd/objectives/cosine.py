"""Embedding-level cosine KD: the student's speaker embedding, projected to
the teacher's dimension, pulled towards the teacher's by ``1 - cos``.

The most common distillation baseline in speaker verification: the
embedding space itself is distilled, not the classifier's posterior. The
projection (learnt with the student, used only by the loss) maps the
student's ``student_dim`` to the teacher's ``teacher_dim``; the published
student keeps its own embedding.
"""

import math

import torch

from speechbrain_kd.objectives.embedding import cosine_distance


def embedding_cosine_loss(student_embedding, teacher_embedding):
    """Batch mean of ``1 - cos(s, t)`` (no gradient to the teacher)."""
    return cosine_distance(student_embedding, teacher_embedding.detach())


class EmbeddingCosineLoss(torch.nn.Module):
    """``embedding_cosine_loss`` after a learnt linear projection of the
    student embedding (none when the dimensions agree).

    The projection is initialised from its own seeded generator, so adding
    the term leaves the run's random streams (student initialisation, data
    order) those of the other methods.

    Arguments
    ---------
    student_dim, teacher_dim : int
        The student's and the teacher's embedding dimensions.
    seed : int
        Seed of the projection's initialisation.

    Example
    -------
    >>> loss = EmbeddingCosineLoss(128, 192)
    >>> value = loss(torch.randn(4, 128), torch.randn(4, 192))
    >>> value.shape, bool(0 <= value <= 2)
    (torch.Size([]), True)
    """

    def __init__(self, student_dim, teacher_dim, seed=0):
        super().__init__()
        self.student_dim, self.teacher_dim = int(student_dim), int(teacher_dim)
        self.projection = None
        if self.student_dim != self.teacher_dim:
            g = torch.Generator().manual_seed(seed)
            bound = 1.0 / math.sqrt(self.student_dim)
            weight = torch.empty(self.teacher_dim, self.student_dim)
            weight.uniform_(-bound, bound, generator=g)
            self.projection = torch.nn.Parameter(weight)

    def forward(self, student_embedding, teacher_embedding):
        """The loss of ``[batch, student_dim]`` student and ``[batch,
        teacher_dim]`` teacher embeddings."""
        s = student_embedding.reshape(len(student_embedding), -1)
        t = teacher_embedding.reshape(len(teacher_embedding), -1)
        for name, x, dim in (
            ("student_dim", s, self.student_dim),
            ("teacher_dim", t, self.teacher_dim),
        ):
            if x.shape[-1] != dim:
                raise ValueError(
                    f"EmbeddingCosineLoss: {name} is {dim} but the "
                    f"embeddings are {x.shape[-1]}-d; set the method's "
                    f"{name.replace('_dim', '_emb_dim')} to {x.shape[-1]}"
                )
        if self.projection is not None:
            s = s @ self.projection.t()
        return embedding_cosine_loss(s, t)
