"""The recipe YAMLs: methods differ only in their distillation section."""

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
    tree = load(name)
    assert name in str(tree["output_folder"])
    assert bool(tree["distill_terms"]) == (name != "nokd")
    # Schedules are functions of the epoch: nothing to checkpoint
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


def test_mixer_trkd_is_trkd_with_a_mixer_student():
    """mixer_trkd.yaml: trkd.yaml's training and distillation, another
    embedding model (the Mixer row of the method table)."""
    import torch
    from hyperpyyaml import load_hyperpyyaml

    trkd, mixer = load("trkd"), load("mixer_trkd")
    for key in ("distill_terms", "tau_schedule", "compute_cost", "lr"):
        assert dump(trkd[key]) == dump(mixer[key]), key
    with open(RECIPE / "hparams" / "mixer_trkd.yaml") as f:
        hp = load_hyperpyyaml(f, {"data_folder": "unused"})
    emb = hp["embedding_model"](torch.randn(2, 120, 80), torch.ones(2))
    assert emb.shape == (2, 1, hp["emb_dim"])
