"""Multi-level x-vector distillation: taps, LDE, losses, YAMLs, tiny run."""

import copy
import functools
import io
import json
import math

import pytest
import ruamel.yaml
import torch
from conftest import RECIPE, TINY_RUN, run_recipe

from speechbrain_kd.frames import (
    counts_mask,
    frame_mask,
    masked_mean_std,
    zero_padding,
)
from speechbrain_kd.lobes.aggregation import (
    LDEAggregator,
    LDEPooling,
    StatisticsAggregator,
)
from speechbrain_kd.objectives.embedding import (
    EmbeddingDistillation,
    FrameDistillation,
    concat_normalized,
    cosine_distance,
    frame_cosine_distance,
)
from speechbrain_kd.objectives.kd import kd_loss
from speechbrain_kd.taps import LayerTaps
from speechbrain_kd.terms import build_terms, provided_inputs

HPARAMS = RECIPE / "hparams"
# Variants: ml.yaml (x-vector student) and ml_ecapa.yaml (ECAPA student)
# at one ml_level each (the former ml_<level>.yaml, ml_ecapa_<level>.yaml)
XV_STUDENTS = ("nokd", "utt", "frame", "stats", "lde", "concat")
ECAPA_STUDENTS = ("ecapa_nokd", "ecapa_concat")
ALL_STUDENTS = XV_STUDENTS + ECAPA_STUDENTS
# Keys of the distillation, allowed to differ between levels
METHOD_KEYS = {
    "ml_level",
    "output_folder",
    "distill_terms",
    "teacher_taps",
    "student_taps",
}


def variant(name):
    """``(yaml, ml_level)`` of a variant, e.g. ``ecapa_concat``."""
    if name.startswith("ecapa_"):
        return "ml_ecapa", name[len("ecapa_") :]
    return "ml", name


def load_hparams(name, **overrides):
    from hyperpyyaml import load_hyperpyyaml

    with open(HPARAMS / f"{name}.yaml") as f:
        return load_hyperpyyaml(f, {"data_folder": "unused", **overrides})


def load_variant(name, **overrides):
    yaml, level = variant(name)
    return load_hparams(yaml, ml_level=level, **overrides)


# --------------------------------------------------------------- distances


def test_cosine_distance_hand_values():
    s = torch.tensor([[1.0, 0.0], [1.0, 0.0], [3.0, 4.0]])
    t = torch.tensor([[0.0, 2.0], [1.0, 1.0], [-3.0, -4.0]])
    # 1 - 0, 1 - 1/sqrt(2), 1 + 1
    expected = (1.0 + (1 - 1 / math.sqrt(2)) + 2.0) / 3
    torch.testing.assert_close(
        cosine_distance(s, t), torch.tensor(expected), rtol=0, atol=1e-6
    )
    # [batch, 1, dim] is accepted, the scale of either side does not matter
    torch.testing.assert_close(
        cosine_distance(5 * s.unsqueeze(1), t), cosine_distance(s, t)
    )
    with pytest.raises(ValueError, match="project the student"):
        cosine_distance(torch.randn(2, 3), torch.randn(2, 4))


def test_frame_cosine_distance_masks_padding():
    # utterance 0: 2 valid frames of 4 (distances 0 and 1); utterance 1: all
    # 4 valid (distances 2, 0, 0, 0). Padded frames hold garbage.
    s = torch.tensor(
        [
            [[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]],
            [[0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]],
        ]
    )
    t = torch.tensor(
        [
            [[2.0, 0.0], [0.0, 1.0], [-9.0, 0.0], [-1.0, 0.0]],
            [[0.0, -1.0], [0.0, 3.0], [0.0, 1.0], [0.0, 1.0]],
        ]
    )
    lengths = torch.tensor([0.5, 1.0])
    expected = ((0 + 1) / 2 + (2 + 0 + 0 + 0) / 4) / 2
    value = frame_cosine_distance(s, t, lengths)
    torch.testing.assert_close(value, torch.tensor(expected))
    # Changing the padded frames changes nothing
    t2 = t.clone()
    t2[0, 2:] = torch.randn(2, 2)
    torch.testing.assert_close(frame_cosine_distance(s, t2, lengths), value)
    # Without lengths, every frame counts
    full = ((0 + 1 + 2 + 2) / 4 + 0.5) / 2
    torch.testing.assert_close(frame_cosine_distance(s, t), torch.tensor(full))


def test_frame_mask_convention():
    # round(length * T), as SpeechBrain's StatisticsPooling, at least one
    mask = frame_mask(torch.tensor([1.0, 0.55, 0.01]), 10)
    assert mask.sum(1).tolist() == [10, 6, 1]
    assert mask[1, :6].all() and not mask[1, 6:].any()
    mask = frame_mask(torch.tensor([1.0, 0.5]), 4)
    assert mask.tolist() == [[True] * 4, [True, True, False, False]]


def test_counts_mask_and_zero_padding():
    mask = counts_mask(torch.tensor([3, 1]), 3)
    assert mask.tolist() == [[True, True, True], [True, False, False]]
    x = torch.tensor([[1.0, float("nan")]])
    want = torch.tensor([[1.0, 0.0]])
    assert torch.equal(zero_padding(x, torch.tensor([[1.0, 0.0]])), want)
    assert torch.equal(zero_padding(x, torch.tensor([[True, False]])), want)


def test_masked_mean_std_matches_torch_on_valid_frames():
    x = torch.randn(3, 20, 5)
    lengths = torch.tensor([1.0, 0.5, 0.25])
    mean, std = masked_mean_std(x, lengths)
    for i, n in enumerate((20, 10, 5)):
        torch.testing.assert_close(mean[i], x[i, :n].mean(0))
        torch.testing.assert_close(std[i], x[i, :n].std(0))


def test_concat_normalized_weighs_parts_equally():
    a = torch.tensor([[300.0, 400.0]])
    b = torch.tensor([[0.0, 0.0, 0.02]])
    out = concat_normalized([a, b])
    torch.testing.assert_close(
        out, torch.tensor([[0.6, 0.8, 0.0, 0.0, 1.0]]) / math.sqrt(2)
    )
    assert abs(float(out.norm()) - 1.0) < 1e-6


# ----------------------------------------------------------- loss modules


def test_embedding_distillation_hand_value_and_detached_target():
    loss = EmbeddingDistillation(
        student_dim=2, parts=[{"layers": ["segment6"], "dim": 2}]
    )
    assert isinstance(loss.projection, torch.nn.Identity)
    student = torch.tensor([[1.0, 0.0], [0.0, 2.0]], requires_grad=True)
    teacher = torch.tensor([[[1.0, 1.0]], [[0.0, -1.0]]], requires_grad=True)
    value = loss(student, teacher_segment6=teacher)
    expected = ((1 - 1 / math.sqrt(2)) + 2.0) / 2
    torch.testing.assert_close(value, torch.tensor(expected))
    value.backward()
    assert student.grad is not None and teacher.grad is None


def test_embedding_distillation_concat_with_projection():
    torch.manual_seed(0)
    loss = EmbeddingDistillation(
        student_dim=4,
        parts=[
            {"layers": ["segment6"], "dim": 6},
            {"layers": ["embedding"], "dim": 3},
            {
                "layers": ["narrowBN", "wideBN"],
                "pooling": StatisticsAggregator([5, 7]),
            },
        ],
    )
    assert loss.target_dim == 6 + 3 + 24
    assert loss.projection.weight.shape == (33, 4)
    taps = {
        "teacher_segment6": torch.randn(2, 1, 6),
        "teacher_narrowBN": torch.randn(2, 9, 5),
        "teacher_wideBN": torch.randn(2, 9, 7),
    }
    lengths = torch.tensor([1.0, 0.5])
    emb = torch.randn(2, 3)
    value = loss(torch.randn(2, 4), lengths, None, emb, **taps)
    value.backward()
    assert loss.projection.weight.grad.abs().sum() > 0
    # The target is the normalised concatenation of the three parts
    target, aux = loss.teacher_target(lengths, None, emb, **taps)
    assert aux is None
    mean, std = masked_mean_std(
        torch.cat([taps["teacher_narrowBN"], taps["teacher_wideBN"]], -1),
        lengths,
    )
    expected = concat_normalized(
        [taps["teacher_segment6"][:, 0], emb, torch.cat([mean, std], -1)]
    )
    torch.testing.assert_close(target, expected)


def test_embedding_distillation_errors():
    with pytest.raises(ValueError, match="parts must be a non-empty list"):
        EmbeddingDistillation(4, [])
    with pytest.raises(ValueError, match=r"parts\[0\] needs exactly one"):
        EmbeddingDistillation(4, [{"layers": ["a"]}])
    with pytest.raises(TypeError, match=r"parts\[0\]\[pooling\]"):
        EmbeddingDistillation(4, [{"layers": ["a"], "pooling": "stats"}])
    loss = EmbeddingDistillation(4, [{"layers": ["segment6"], "dim": 8}])
    with pytest.raises(KeyError, match="teacher_taps"):
        loss(torch.randn(2, 4), teacher_wideBN=torch.randn(2, 3, 8))
    with pytest.raises(ValueError, match="the YAML says 8"):
        loss(torch.randn(2, 4), teacher_segment6=torch.randn(2, 1, 9))


def test_frame_distillation_layouts_and_errors():
    torch.manual_seed(0)
    loss = FrameDistillation(
        "blk", "wideBN", 6, 10, student_channels_first=True
    )
    s = torch.randn(2, 6, 15, requires_grad=True)  # ECAPA-style [B, C, T]
    t = torch.randn(2, 15, 10)
    lengths = torch.tensor([1.0, 0.4])
    value = loss(lengths, student_blk=s, teacher_wideBN=t)
    proj = loss.projection(s.transpose(1, 2))
    torch.testing.assert_close(value, frame_cosine_distance(proj, t, lengths))
    value.backward()
    # Padded frames of utterance 1 (beyond 6 of 15) get no gradient
    assert s.grad[1, :, 6:].abs().sum() == 0 and s.grad[1, :, :6].abs().sum()
    with pytest.raises(ValueError, match="same feature frame rate"):
        loss(
            lengths,
            student_blk=torch.randn(2, 6, 15),
            teacher_wideBN=torch.randn(2, 14, 10),
        )
    with pytest.raises(ValueError, match="student_channels_first"):
        loss(
            lengths,
            student_blk=torch.randn(2, 15, 6),
            teacher_wideBN=torch.randn(2, 15, 10),
        )
    with pytest.raises(KeyError, match="student_taps"):
        loss(lengths, teacher_wideBN=t)


# --------------------------------------------------------------------- LDE


def lde_reference(lde, x, lengths):
    """Cai et al.'s formula with the explicit residual tensor."""
    n = frame_mask(lengths, x.shape[1])
    out = []
    s = lde.log_scale.exp()
    for b in range(x.shape[0]):
        frames = x[b, : int(n[b].sum())]  # [T, D]
        res = frames.unsqueeze(1) - lde.mu  # [T, C, D]
        w = torch.softmax(-s * (res**2).sum(-1), dim=-1)  # [T, C]
        enc = (w.unsqueeze(-1) * res).sum(0) / w.sum(0).unsqueeze(-1)
        out.append(enc.reshape(-1))
    return torch.stack(out)


def test_lde_matches_reference_formula():
    torch.manual_seed(0)
    lde = LDEPooling(input_size=6, num_components=3).double()
    x = torch.randn(3, 12, 6, dtype=torch.float64)
    lengths = torch.tensor([1.0, 0.5, 0.25])
    torch.testing.assert_close(
        lde(x, lengths), lde_reference(lde, x, lengths), atol=1e-6, rtol=1e-6
    )


def test_lde_gradients():
    torch.manual_seed(0)
    lde = LDEPooling(input_size=4, num_components=3).double()
    lengths = torch.tensor([1.0, 0.6])
    x = torch.randn(2, 7, 4, dtype=torch.float64, requires_grad=True)
    mu = lde.mu.detach().clone().requires_grad_(True)
    log_scale = lde.log_scale.detach().clone().requires_grad_(True)

    def module(x, mu, log_scale):
        params = {"mu": mu, "log_scale": log_scale}
        return torch.func.functional_call(lde, params, (x, lengths))

    # Analytic gradients match finite differences (x, dictionary, scales)
    assert torch.autograd.gradcheck(module, (x, mu, log_scale))
    # ... and the gradients of the explicit-residual reference formula
    out = module(x, mu, log_scale)
    with torch.no_grad():
        lde.mu.copy_(mu)
        lde.log_scale.copy_(log_scale)
    ref = lde_reference(lde, x, lengths)
    g = torch.randn_like(out)
    grads = torch.autograd.grad((out * g).sum(), (x, mu, log_scale))
    ref_grads = torch.autograd.grad((ref * g).sum(), (x, lde.mu, lde.log_scale))
    for a, b in zip(grads, ref_grads):  # the module guards empty masses
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        assert a.abs().sum() > 0
    # Padded frames (4 of 7 valid in utterance 1) get no gradient
    assert grads[0][1, 4:].abs().sum() == 0
    assert grads[0][1, :4].abs().sum() > 0


def test_embedding_epoch_stats_exact_without_host_sync():
    """The epoch means are those of the Python-float sums (bit for bit),
    and the training forward reads no tensor on the host (but for the
    aggregator's check of the class indices, left out here)."""
    from test_dynamic import NoHostSync

    torch.manual_seed(0)
    agg = LDEAggregator([5, 7], num_components=4, reduce_size=6, num_classes=3)
    loss = EmbeddingDistillation(8, [{"layers": ["a", "b"], "pooling": agg}])
    check = agg.auxiliary_loss
    agg.auxiliary_loss = lambda pooled, targets: (
        agg.aux_weight
        * (torch.nn.functional.cross_entropy(agg.classifier(pooled), targets))
    )
    lengths = torch.tensor([1.0, 0.8, 0.5, 0.3])
    targets = torch.tensor([0, 1, 2, 1])
    sums = {"cos": 0.0, "aux": 0.0}
    for step in range(7):
        taps = {
            "teacher_a": torch.randn(4, 10, 5),
            "teacher_b": torch.randn(4, 10, 7),
        }
        student = torch.randn(4, 8)
        target, aux = loss.teacher_target(lengths, targets, None, **taps)
        torch.testing.assert_close(aux, check(target, targets))
        cos = cosine_distance(loss.projection(student), target.detach())
        sums["cos"] += float(cos.detach())
        sums["aux"] += float(aux.detach())
        with NoHostSync():
            loss(student, lengths, targets, **taps)
    assert loss.epoch_stats() == {k: v / 7 for k, v in sums.items()}
    assert loss.epoch_stats() == {}


def test_lde_aggregator_is_trained_by_its_auxiliary_loss_only():
    torch.manual_seed(0)
    agg = LDEAggregator([5, 7], num_components=4, reduce_size=6, num_classes=3)
    loss = EmbeddingDistillation(8, [{"layers": ["a", "b"], "pooling": agg}])
    taps = {
        "teacher_a": torch.randn(4, 10, 5),
        "teacher_b": torch.randn(4, 10, 7),
    }
    student = torch.randn(4, 8, requires_grad=True)
    targets = torch.tensor([0, 1, 2, 1])
    lengths = torch.tensor([1.0, 0.8, 0.5, 0.3])
    target, aux = loss.teacher_target(lengths, targets, None, **taps)
    assert target.shape == (4, 24) and aux > 0
    # The cosine part reaches the student and the head, not the aggregator
    agg.aux_weight = 0.0
    dist = loss(student, lengths, targets, **taps)
    grads = torch.autograd.grad(
        dist, [student, loss.projection.weight, agg.lde.mu], allow_unused=True
    )
    assert grads[0].abs().sum() > 0 and grads[1].abs().sum() > 0
    assert grads[2] is None or grads[2].abs().sum() == 0
    agg.aux_weight = 1.0
    # The auxiliary classifier trains reduce, dictionary and scales
    loss.zero_grad()
    loss(student, lengths, targets, **taps).backward()
    for p in (agg.reduce.weight, agg.lde.mu, agg.lde.log_scale):
        assert p.grad is not None and p.grad.abs().sum() > 0
    # The train log gets the two parts separately
    stats = loss.epoch_stats()
    assert set(stats) == {"cos", "aux"} and stats["aux"] > 0
    assert loss.epoch_stats() == {}
    with pytest.raises(ValueError, match="num_classes is 3"):
        agg.auxiliary_loss(target, torch.tensor([0, 5, 1, 1]))


# ----------------------------------------------------- Brain term plumbing


def test_terms_receive_taps_and_combine_with_logit_kd():
    torch.manual_seed(0)
    hp = {"teacher_taps": {"narrowBN": "x", "segment6": "y"}}
    hp["student_taps"] = {"frame4": "z"}
    utt = EmbeddingDistillation(8, [{"layers": ["segment6"], "dim": 16}])
    frame = FrameDistillation("frame4", "narrowBN", 6, 12)
    terms = build_terms(
        {
            "kd": {"fn": functools.partial(kd_loss, T=2.0), "weight": 0.5},
            "utt": {"fn": utt, "weight": 2.0},
            "frame": {"fn": frame, "weight": 1.0},
        },
        provided_inputs(hp),
    )
    assert "teacher_segment6" in terms[1].inputs
    assert "student_frame4" in terms[2].inputs
    student_emb = torch.randn(3, 8, requires_grad=True)
    student_frames = torch.randn(3, 20, 6, requires_grad=True)
    available = {
        "student_logits": torch.randn(3, 5, requires_grad=True),
        "teacher_logits": torch.randn(3, 5),
        "targets": torch.tensor([0, 1, 2]),
        "student_embedding": student_emb,
        "teacher_embedding": torch.randn(3, 16),
        "lengths": torch.tensor([1.0, 1.0, 0.5]),
        "tau": None,
        "teacher_segment6": torch.randn(3, 1, 16),
        "teacher_narrowBN": torch.randn(3, 20, 12),
        "student_frame4": student_frames,
    }
    values = [t(available) for t in terms]
    total = sum(t.weight * v for t, v in zip(terms, values))
    total.backward()
    assert student_emb.grad.abs().sum() > 0
    assert student_frames.grad.abs().sum() > 0
    assert available["student_logits"].grad.abs().sum() > 0


# ------------------------------------------------------------------- YAMLs


def strip(name):
    """The resolved tree of a variant (fragments included) but its
    distillation keys, as YAML lines."""
    from hyperpyyaml import resolve_references

    yaml, level = variant(name)
    overrides = {"data_folder": "x", "output_folder": "x", "ml_level": level}
    with open(HPARAMS / f"{yaml}.yaml") as f:
        tree = ruamel.yaml.YAML().load(resolve_references(f, overrides))
    tree = copy.deepcopy(tree)
    for key in METHOD_KEYS:
        tree.pop(key, None)
    out = io.StringIO()
    ruamel.yaml.YAML().dump(tree, out)
    return [
        line.split(" #")[0]
        for line in out.getvalue().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


@pytest.mark.parametrize("family", [XV_STUDENTS, ECAPA_STUDENTS])
def test_ml_variants_differ_only_in_distillation(family):
    base = strip(family[0])
    for name in family[1:]:
        assert strip(name) == base, name


def test_teacher_xvector_yaml_mirrors_the_ecapa_teacher():
    def keys(name):
        text = (HPARAMS / f"{name}.yaml").read_text()
        return set(ruamel.yaml.YAML().load(text))

    assert keys("teacher_xvector") - keys("teacher_ecapa") == {"wide_channels"}
    assert keys("teacher_ecapa") <= keys("teacher_xvector")


@pytest.fixture(scope="module")
def teacher_model():
    """The (untrained) x-vector teacher of teacher_xvector.yaml."""
    from speechbrain.lobes.models.Xvector import Xvector

    hp = load_hparams("teacher_xvector")
    model = hp["embedding_model"].eval()
    assert isinstance(model, Xvector)
    assert hp["n_mels"] == 24 and hp["emb_dim"] == 512
    n_params = sum(p.numel() for p in model.parameters())
    return model, n_params, hp["compute_features"]


def all_teacher_taps():
    taps = {}
    for name in ALL_STUDENTS:
        tree = load_variant(name)
        for alias, path in (tree.get("teacher_taps") or {}).items():
            assert taps.setdefault(alias, path) == path, alias
    return taps


def test_teacher_taps_shapes_and_outputs_unchanged(teacher_model):
    model = teacher_model[0]
    taps_spec = all_teacher_taps()
    assert taps_spec["narrowBN"] == "blocks.11"
    assert taps_spec["wideBN"] == "blocks.14"
    feats = torch.randn(2, 60, 24)
    lens = torch.tensor([1.0, 0.7])
    with torch.no_grad():
        torch.manual_seed(1)  # statistics pooling adds (tiny) noise
        plain = model(feats, lens)
        taps = LayerTaps(model, taps_spec)
        torch.manual_seed(1)
        tapped = model(feats, lens)
        outputs = taps.pop()
        taps.remove()
    torch.testing.assert_close(tapped, plain, rtol=0, atol=0)
    channels = {"frame1": 512, "frame2": 512, "frame3": 512}
    channels.update(narrowBN=512, wideBN=1500)
    for alias, c in channels.items():
        assert outputs[alias].shape == (2, 60, c), alias
    assert outputs["segment6"].shape == (2, 1, 512)
    torch.testing.assert_close(outputs["segment6"], plain, rtol=0, atol=0)


@pytest.mark.parametrize("name", ALL_STUDENTS)
def test_ml_yaml_terms_run_on_teacher_taps(name, teacher_model):
    """Every variant's terms, fed by the real teacher architecture's taps,
    give a finite loss whose gradient reaches the student."""
    teacher, n_teacher, teacher_features = teacher_model
    hp = load_variant(name)
    student = hp["embedding_model"]
    n_student = sum(p.numel() for p in student.parameters())
    assert n_student <= 0.15 * n_teacher, n_student
    assert hp["teacher_source"].endswith("teacher_xvector/1986/pretrained")
    terms = build_terms(hp["distill_terms"], provided_inputs(hp))
    assert bool(terms) == (not name.endswith("nokd"))
    if not terms:
        return
    torch.manual_seed(0)
    wavs = torch.randn(2, 8000)
    lens = torch.tensor([1.0, 0.8])
    t_taps = LayerTaps(teacher, hp.get("teacher_taps"))
    s_taps = LayerTaps(student, hp.get("student_taps"))
    with torch.no_grad():
        t_emb = teacher(teacher_features(wavs), lens)
    feats = hp["compute_features"](wavs)
    emb = student(feats, lens)
    available = {
        "student_embedding": emb.reshape(2, -1),
        "teacher_embedding": t_emb.reshape(2, -1),
        "targets": torch.tensor([0, 3]),
        "lengths": lens,
    }
    available.update({f"teacher_{k}": v for k, v in t_taps.pop().items()})
    available.update({f"student_{k}": v for k, v in s_taps.pop().items()})
    total = sum(t.weight * t(available) for t in terms)
    assert torch.isfinite(total) and total > 0
    total.backward()
    first = next(student.parameters())
    assert first.grad is not None and first.grad.abs().sum() > 0
    for term in terms:
        assert isinstance(term.fn, torch.nn.Module)
        assert any(p.grad is not None for p in term.fn.parameters())


# ------------------------------------------------------------ tiny recipe


def test_tiny_xvector_teacher_and_lde_student(tiny_data, tmp_path):
    from speechbrain.inference.speaker import EncoderClassifier

    from speechbrain_kd.teachers import FrozenTeacher

    teacher = tmp_path / "teacher"
    run_recipe(
        "train_teacher.py",
        "teacher_xvector.yaml",
        f"--data_folder={tiny_data}",
        f"--output_folder={teacher}",
        f"--prep_folder={tmp_path}/prep",
        "--number_of_epochs=1",
        "--channels=32",
        "--wide_channels=48",
        "--emb_dim=24",
        *TINY_RUN,
    )
    out = tmp_path / "lde"
    run_recipe(
        "train_kd.py",
        "ml.yaml",
        "--ml_level=lde",
        f"--data_folder={tiny_data}",
        f"--output_folder={out}",
        f"--prep_folder={tmp_path}/prep",
        f"--teacher_source={teacher}/pretrained",
        "--number_of_epochs=1",
        "--channels=16",
        "--wide_channels=24",
        "--emb_dim=16",
        "--teacher_channels=32",
        "--teacher_wide_channels=48",
        "--teacher_emb_dim=24",
        "--lde_components=4",
        "--lde_reduce_size=8",
        "--train_views=2",  # fixed crops, as the speechocean762 rows
        "--views_seed=7",
        *TINY_RUN,
    )
    log = (out / "train_log.txt").read_text()
    assert "train lde" in log and "train task" in log
    assert "train lde_cos" in log and "train lde_aux" in log
    result = json.loads((out / "verification.json").read_text())
    assert set(result) == {"teacher", "student"}
    # a card states its own EER once; a student's also the teacher's
    card = (teacher / "pretrained" / "README.md").read_text()
    assert card.count("EER (%) |") == 1 and "teacher EER" not in card
    card = (out / "pretrained" / "README.md").read_text()
    assert "| EER (%) |" in card and "| teacher EER (%) |" in card
    assert result["student"]["target_trials"] == 30
    # The learnable aggregator and its head were checkpointed with the student
    ckpts = list((out / "save").glob("CKPT+*/distill_lde.ckpt"))
    assert ckpts
    state = torch.load(ckpts[0])
    assert state["poolings.0.lde.mu"].shape == (4, 8)
    assert state["projection.weight"].shape == (32, 16)
    student = EncoderClassifier.from_hparams(
        source=str(out / "pretrained"), savedir=str(tmp_path / "load")
    )
    assert type(student.mods.embedding_model).__name__ == "Xvector"
    assert student.encode_batch(torch.randn(2, 16000)).shape == (2, 1, 16)
    # The published x-vector teacher, tapped as in ml.yaml --ml_level=concat:
    # frame-level outputs of the right shapes, the teacher's outputs
    # unchanged.
    plain = FrozenTeacher.from_pretrained(
        str(teacher / "pretrained"), savedir=str(tmp_path / "t1")
    )
    tapped = FrozenTeacher.from_pretrained(
        str(teacher / "pretrained"),
        savedir=str(tmp_path / "t2"),
        taps={
            "narrowBN": "blocks.11",
            "wideBN": "blocks.14",
            "seg": "blocks.16",
        },
    )
    wavs, lens = torch.randn(3, 16000), torch.tensor([1.0, 0.9, 0.5])
    torch.manual_seed(0)
    ref = plain(wavs, lens)
    torch.manual_seed(0)
    got = tapped(wavs, lens)
    assert set(ref) == {"logits", "embedding"}
    for key in ref:
        torch.testing.assert_close(got[key], ref[key], rtol=0, atol=0)
    assert got["narrowBN"].shape == (3, 101, 32)
    assert got["wideBN"].shape == (3, 101, 48)
    torch.testing.assert_close(got["seg"][:, 0], ref["embedding"])


def test_embedding_stats_survive_an_intra_epoch_checkpoint(tmp_path):
    """The epoch statistics of an embedding term continue across an
    intra-epoch checkpoint (TermStatistics), as TRKD's do."""
    from speechbrain_kd.checkpointing import TermStatistics
    from speechbrain_kd.terms import DistillTerm

    lengths = torch.tensor([1.0, 0.8, 0.5, 0.3])
    targets = torch.tensor([0, 1, 2, 1])

    def term():
        torch.manual_seed(0)
        agg = LDEAggregator(
            [5, 7], num_components=4, reduce_size=6, num_classes=3
        )
        return EmbeddingDistillation(
            8, [{"layers": ["a", "b"], "pooling": agg}]
        )

    g = torch.Generator().manual_seed(1)
    batches = [
        (
            torch.randn(4, 8, generator=g),
            {
                "teacher_a": torch.randn(4, 10, 5, generator=g),
                "teacher_b": torch.randn(4, 10, 7, generator=g),
            },
        )
        for _ in range(5)
    ]
    whole = term()
    for s, taps in batches:
        whole(s, lengths, targets, **taps)
    resumed = term()
    for s, taps in batches[:3]:
        resumed(s, lengths, targets, **taps)
    path = tmp_path / "stats.ckpt"
    TermStatistics([DistillTerm("emb", resumed)])._save(path)
    fresh = term()
    TermStatistics([DistillTerm("emb", fresh)])._recover(path, False)
    for s, taps in batches[3:]:
        fresh(s, lengths, targets, **taps)
    want, got = whole.epoch_stats(), fresh.epoch_stats()
    assert got.keys() == want.keys() == {"cos", "aux"}
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-12)
