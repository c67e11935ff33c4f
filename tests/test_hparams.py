"""The recipe YAMLs: methods differ only in their distillation section;
the merged variants (dyn_trkd.yaml, ml.yaml, ml_ecapa.yaml + overrides)
build what the removed per-variant files built."""

import copy
import io

import pytest
import ruamel.yaml
from conftest import RECIPE

METHODS = ("nokd", "kd", "dkd", "gkd", "trkd")
# Keys allowed to differ between methods
METHOD_KEYS = {
    "distill_terms",
    "tau_schedule",
    "partition_T",
    "kd_warmup",
    "method",
    "output_folder",
}


def load(name):
    with open(RECIPE / "hparams" / f"{name}.yaml") as f:
        return ruamel.yaml.YAML().load(f)


def dump(node):
    out = io.StringIO()
    ruamel.yaml.YAML().dump(node, out)
    return out.getvalue()


def strip(tree):
    """YAML text of everything but the method's own keys."""
    tree = copy.deepcopy(tree)
    for key in METHOD_KEYS:
        tree.pop(key, None)
    lines = dump(tree).splitlines()
    return [
        line.split(" #")[0]
        for line in lines
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_methods_differ_only_in_distillation():
    base = strip(load("nokd"))
    for name in METHODS[1:]:
        assert strip(load(name)) == base, name


@pytest.mark.parametrize("name", METHODS)
def test_output_folder_and_terms(name):
    tree = resolved(name)
    assert name in str(tree["output_folder"])
    assert bool(tree["distill_terms"]) == (name != "nokd")
    # Schedules are functions of training progress: nothing to checkpoint
    assert "tau_schedule" not in tree["checkpointer"]["recoverables"]
    if name in ("dkd", "trkd"):  # they state their warm-up choice
        assert "kd_warmup" in tree


def test_student_at_most_quarter_of_teacher():
    from hyperpyyaml import load_hyperpyyaml

    sizes = {}
    for name in ("teacher_ecapa", "trkd"):
        with open(RECIPE / "hparams" / f"{name}.yaml") as f:
            hp = load_hyperpyyaml(f, {"data_folder": "unused"})
        sizes[name] = sum(p.numel() for p in hp["embedding_model"].parameters())
    assert sizes["trkd"] <= 0.25 * sizes["teacher_ecapa"]


def resolved(name, **overrides):
    """The tree of a recipe YAML, references and includes resolved."""
    from hyperpyyaml import resolve_references

    overrides = {"data_folder": "unused", **overrides}
    with open(RECIPE / "hparams" / f"{name}.yaml") as f:
        return ruamel.yaml.YAML().load(resolve_references(f, overrides))


def test_teacher_augmentation_keeps_batch_and_labels():
    import torch
    from hyperpyyaml import load_hyperpyyaml
    from speechbrain.augment.augmenter import Augmenter
    from speechbrain.dataio.batch import PaddedBatch

    from speechbrain_kd.augment import augment_batch

    path = RECIPE / "hparams" / "teacher_ecapa.yaml"
    with open(path) as f:
        assert load_hyperpyyaml(f, {"data_folder": "x"})["wav_augment"] is None
    with open(path) as f:
        hp = load_hyperpyyaml(f, {"data_folder": "x", "augment": True})
    aug = hp["wav_augment"]
    assert isinstance(aug, Augmenter) and len(aug.augmentations) == 4
    torch.manual_seed(0)
    wav = torch.randn(4, 16000)
    batch = PaddedBatch(
        [
            {"sig": w, "spk_id_encoded": torch.tensor([i])}
            for i, w in enumerate(wav)
        ]
    )
    assert (aug.min_augmentations, aug.max_augmentations) == (1, 4)
    assert not aug.parallel_augment and not aug.concat_original
    changed = []
    for _ in range(5):  # one draw may be speed 100 % alone: the identity
        out = augment_batch(copy.deepcopy(batch), aug)
        assert out.sig.data.shape[0] == 4  # speed: 95-105 % of the time
        assert 16000 / 1.05 - 1 <= out.sig.data.shape[1] <= 16000 / 0.95 + 1
        assert out.spk_id_encoded.data.flatten().tolist() == [0, 1, 2, 3]
        changed.append(
            out.sig.data.shape != wav.shape
            or not torch.equal(out.sig.data, wav)
        )
    assert any(changed)
    with open(path) as f, pytest.raises(TypeError, match="augment"):
        load_hyperpyyaml(f, {"data_folder": "x", "augment": "yes"})


def test_mixer_trkd_is_trkd_with_a_mixer_student():
    """mixer_trkd.yaml: trkd.yaml's training and distillation, another
    embedding model (the Mixer row of the method table)."""
    import torch
    from hyperpyyaml import load_hyperpyyaml

    trkd = resolved("trkd", output_folder="out")
    mixer = resolved("mixer_trkd", output_folder="out")
    for key in ("distill_terms", "tau_schedule", "compute_cost", "lr"):
        assert dump(trkd[key]) == dump(mixer[key]), key
    for key in ("opt_class", "lr_annealing", "train_dataloader_opts"):
        assert dump(trkd[key]) == dump(mixer[key]), key
    assert dump(trkd["embedding_model"]) != dump(mixer["embedding_model"])
    with open(RECIPE / "hparams" / "mixer_trkd.yaml") as f:
        hp = load_hyperpyyaml(f, {"data_folder": "unused"})
    emb = hp["embedding_model"](torch.randn(2, 120, 80), torch.ones(2))
    assert emb.shape == (2, 1, hp["emb_dim"])


def test_methods_resolve_alike_but_for_distillation():
    """Resolved (fragments included), the methods' trees differ only in
    the method's keys (same student, training, data)."""
    base = resolved("nokd", output_folder="out")
    for name in METHODS[1:]:
        tree = resolved(name, output_folder="out")
        for key in set(base) | set(tree):
            if key in METHOD_KEYS:
                continue
            assert dump(tree[key]) == dump(base[key]), (name, key)


# ------------------------------------------- merged variants = old files

# Removed file -> (recipe YAML, the overrides reproducing it, what the
# removed file built: output folder, distillation terms {name: [weight,
# loss, learnable parameters(, complexity target)]}, teacher / student
# taps, student [embedding model, its parameters, classifier parameters]).
# Recorded from the removed files (git show a199517:recipes/MiniSpeakers/
# hparams/<name>.yaml); initial weights: see recipes/MiniSpeakers/README.md.
DYN = ["DynamicECAPA", 486887, 34432]
XV = ["Xvector", 401568, 34432]
ECAPA = ["ECAPA_TDNN", 486884, 34432]
FRAMES = {
    "frame1": "blocks.2",
    "frame2": "blocks.5",
    "frame3": "blocks.8",
    "narrowBN": "blocks.11",
    "wideBN": "blocks.14",
}
CONCAT_TAPS = {"narrowBN": "blocks.11", "wideBN": "blocks.14"}
CONCAT_TAPS["segment6"] = "blocks.16"
CONCAT = {"concat": [10.0, "EmbeddingDistillation", 585144]}
VARIANTS = {
    "dyn_trkd_050": (
        "dyn_trkd",
        {"flops_target": 0.5},
        "dyn_trkd_0.5",
        {
            "trkd": [1.0, "TRKDLoss", None],
            "complexity": [200.0, "ComplexityLoss", 0, 0.5],
        },
        None,
        None,
        DYN,
    ),
    "dyn_trkd_025": (
        "dyn_trkd",
        {"flops_target": 0.25},
        "dyn_trkd_0.25",
        {
            "trkd": [1.0, "TRKDLoss", None],
            "complexity": [200.0, "ComplexityLoss", 0, 0.25],
        },
        None,
        None,
        DYN,
    ),
    "dyn_trkd_0125": (
        "dyn_trkd",
        {"flops_target": 0.125},
        "dyn_trkd_0.125",
        {
            "trkd": [1.0, "TRKDLoss", None],
            "complexity": [200.0, "ComplexityLoss", 0, 0.125],
        },
        None,
        None,
        DYN,
    ),
    "ml_nokd": ("ml", {"ml_level": "nokd"}, "ml_nokd", {}, None, None, XV),
    "ml_utt": (
        "ml",
        {"ml_level": "utt"},
        "ml_utt",
        {"utt": [10.0, "EmbeddingDistillation", 66048]},
        {"segment6": "blocks.16"},
        None,
        XV,
    ),
    "ml_frame": (
        "ml",
        {"ml_level": "frame"},
        "ml_frame",
        {
            "narrowBN": [5.0, "FrameDistillation", 82432],
            "wideBN": [5.0, "FrameDistillation", 721500],
        },
        {"narrowBN": "blocks.11", "wideBN": "blocks.14"},
        {"frame4": "blocks.11", "frame5": "blocks.14"},
        XV,
    ),
    "ml_stats": (
        "ml",
        {"ml_level": "stats"},
        "ml_stats",
        {"stats": [10.0, "EmbeddingDistillation", 915384]},
        FRAMES,
        None,
        XV,
    ),
    "ml_lde": (
        "ml",
        {"ml_level": "lde"},
        "ml_lde",
        {"lde": [10.0, "EmbeddingDistillation", 1271709]},
        FRAMES,
        None,
        XV,
    ),
    "ml_concat": (
        "ml",
        {"ml_level": "concat"},
        "ml_concat",
        CONCAT,
        CONCAT_TAPS,
        None,
        XV,
    ),
    "ml_ecapa_nokd": (
        "ml_ecapa",
        {"ml_level": "nokd"},
        "ml_ecapa_nokd",
        {},
        None,
        None,
        ECAPA,
    ),
    "ml_ecapa_concat": (
        "ml_ecapa",
        {"ml_level": "concat"},
        "ml_ecapa_concat",
        CONCAT,
        CONCAT_TAPS,
        None,
        ECAPA,
    ),
}


def count(module):
    import torch

    if not isinstance(module, torch.nn.Module):
        return None
    return sum(p.numel() for p in module.parameters())


def built(name, overrides):
    """What a recipe YAML + overrides builds (the facts of VARIANTS)."""
    from hyperpyyaml import load_hyperpyyaml

    with open(RECIPE / "hparams" / f"{name}.yaml") as f:
        hp = load_hyperpyyaml(f, {"data_folder": "unused", **overrides})
    terms = {}
    for term, entry in hp["distill_terms"].items():
        fn = entry["fn"]
        loss = getattr(getattr(fn, "func", fn), "__name__", type(fn).__name__)
        terms[term] = [entry["weight"], loss, count(fn)]
        if hasattr(fn, "target"):
            terms[term].append(float(fn.target))
    student = [
        type(hp["embedding_model"]).__name__,
        count(hp["embedding_model"]),
        count(hp["classifier"]),
    ]
    return hp, terms, student


@pytest.mark.parametrize("old", VARIANTS)
def test_merged_variant_builds_the_removed_file(old):
    name, overrides, folder, terms, t_taps, s_taps, student = VARIANTS[old]
    assert not (RECIPE / "hparams" / f"{old}.yaml").exists()
    hp, got_terms, got_student = built(name, overrides)
    assert hp["output_folder"] == f"results/mini/{folder}/1986"
    assert got_terms == terms
    assert list(got_terms) == list(terms)  # same order
    assert hp.get("teacher_taps") == t_taps
    assert hp.get("student_taps") == s_taps
    assert got_student == student
    if name == "dyn_trkd":  # trkd.yaml's TRKD and curriculum
        tau = hp["tau_schedule"]
        p = tau.progress
        assert [tau.start, tau.end, p.unit, p.start, p.end] == [
            1.0,
            0.05,
            "at",
            10 / 150,
            60 / 150,
        ]
        assert (
            hp["distill_terms"]["complexity"]["fn"].model
            is (hp["embedding_model"])
        )


def test_merged_variants_have_distinct_output_folders():
    folders = [v[2] for v in VARIANTS.values()]
    assert len(set(folders)) == len(folders)


def test_ml_level_keeps_the_student_and_the_randomness():
    """Every level of ml.yaml: the same initial student and the same RNG
    state after loading (the levels' objects are built after the student,
    the RNG state restored after them)."""
    import torch

    ref = None
    for level in ("nokd", "utt", "lde"):
        hp, _, _ = built("ml", {"ml_level": level})
        state = torch.get_rng_state()
        weights = [
            p.detach().clone() for p in hp["embedding_model"].parameters()
        ]
        if ref is None:
            ref = state, weights
            continue
        assert torch.equal(state, ref[0]), level
        assert all(torch.equal(a, b) for a, b in zip(weights, ref[1])), level


def test_command_line_overrides_reach_the_fragments():
    """--channels and --res2net_scale of the recipe shape the student of
    hparams/students/ecapa.yaml; --tau_schedule="{...}" merges into the
    curriculum of hparams/methods/tau_curriculum.yaml; --method="{...}"
    into the method's settings."""
    hp, _, _ = built(
        "trkd",
        {
            "channels": 32,
            "res2net_scale": 4,
            "tau_schedule": {"end_at": 0.5, "end": 0.2},
            "method": {"lambda_conf": 2.0},
        },
    )
    assert hp["embedding_model"].blocks[0].conv.conv.out_channels == 32
    res2net = hp["embedding_model"].blocks[1].res2net_block
    assert (res2net.scale, len(res2net.blocks)) == (4, 3)
    from speechbrain_kd.export import model_yaml

    published = model_yaml(  # the published folder's hyperparams.yaml
        str(RECIPE / "hparams" / "trkd.yaml"),
        {"data_folder": "unused", "res2net_scale": 4},
    )
    assert "\n  res2net_scale: 4\n" in published
    assert hp["modules"]["embedding_model"] is hp["embedding_model"]
    recoverables = hp["checkpointer"].recoverables
    assert recoverables["embedding_model"] is hp["embedding_model"]
    assert recoverables["counter"] is hp["epoch_counter"]
    tau = hp["tau_schedule"]
    p = tau.progress
    assert (p.unit, p.start, p.end, tau.end) == ("at", 10 / 150, 0.5, 0.2)
    assert hp["distill_terms"]["trkd"]["fn"].lambda_conf == 2.0
