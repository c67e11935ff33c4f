"""Embedding-level cosine KD: hand values, the projection, its recipe
YAMLs (the student and the random streams of kd.yaml), and the term
inside KDBrain."""

import math

import pytest
import torch
from test_hparams import built

from speechbrain_kd.objectives.cosine import (
    EmbeddingCosineLoss,
    embedding_cosine_loss,
)


def test_hand_values():
    s = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    t = torch.tensor([[0.0, 2.0], [1.0, 0.0]])
    # 1 - cos: 1 - 0 and 1 - 1/sqrt(2); mean
    want = (1.0 + 1.0 - 1.0 / math.sqrt(2.0)) / 2.0
    assert float(embedding_cosine_loss(s, t)) == pytest.approx(want)
    # 1 - cos: 1 - 1 (same direction, another scale) and 1 - 0; mean
    s2 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t2 = torch.tensor([[3.0, 0.0], [1.0, 0.0]])
    assert float(embedding_cosine_loss(s2, t2)) == pytest.approx(0.5)
    same = EmbeddingCosineLoss(2, 2)
    assert same.projection is None and list(same.parameters()) == []
    assert torch.equal(same(s, t), embedding_cosine_loss(s, t))


def test_projection_is_learnt_and_seeded_apart():
    """The projection's initialisation draws from its own generator: the
    global random state is untouched; gradients reach the projection and
    the student embedding, never the teacher."""
    state = torch.get_rng_state()
    a, b = EmbeddingCosineLoss(128, 192), EmbeddingCosineLoss(128, 192)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.projection, b.projection)
    assert a.projection.shape == (192, 128)
    s = torch.randn(4, 128, requires_grad=True)
    t = torch.randn(4, 1, 192, requires_grad=True)
    a(s, t).backward()
    assert a.projection.grad.abs().sum() > 0 and s.grad.abs().sum() > 0
    assert t.grad is None
    # projected by hand
    want = embedding_cosine_loss(
        s.detach() @ a.projection.detach().t(), t[:, 0]
    )
    torch.testing.assert_close(a(s.detach(), t.detach()).detach(), want)


def test_wrong_dimension_names_the_key():
    loss = EmbeddingCosineLoss(128, 192)
    with pytest.raises(ValueError, match="teacher_emb_dim to 256"):
        loss(torch.randn(2, 128), torch.randn(2, 256))
    with pytest.raises(ValueError, match="student_emb_dim to 64"):
        loss(torch.randn(2, 64), torch.randn(2, 192))


@pytest.mark.parametrize(
    "name, terms",
    [
        ("cosine", {"cosine": [10.0, "EmbeddingCosineLoss", 128 * 192]}),
        (
            "kd_cosine",
            {
                "kd": [1.0, "kd_loss", None],
                "cosine": [10.0, "EmbeddingCosineLoss", 128 * 192],
            },
        ),
    ],
)
def test_recipe_yamls(name, terms):
    """cosine.yaml and kd_cosine.yaml: their terms, kd.yaml's student with
    kd.yaml's initial weights, and the random state kd.yaml leaves."""
    hp, got, student = built(name, {})
    state = torch.get_rng_state()
    ref, _, ref_student = built("kd", {})
    assert got == terms
    assert student == ref_student
    assert torch.equal(state, torch.get_rng_state())
    for p, q in zip(
        hp["embedding_model"].parameters(), ref["embedding_model"].parameters()
    ):
        assert torch.equal(p, q)
    assert hp["method"]["label"]
    assert hp["output_folder"].endswith(f"/{name}/1986")
