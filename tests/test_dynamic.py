"""Dynamic-width students (arXiv 2601.13704): gates, gradients w.r.t. the
widths, FLOPs estimate vs a counted forward pass, pruning equivalence, the
complexity objective reaching its target, and a tiny end-to-end run
(train_kd.py on a dyn_*.yaml, then prune_student.py)."""

import io
import json
import os
import re
import subprocess
import sys

import pytest
import ruamel.yaml
import torch
from conftest import RECIPE, TINY_RUN
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
from torch.utils.flop_counter import FlopCounterMode

from speechbrain_kd.lobes.dynamic import (
    DynamicECAPA,
    ecapa_macs,
    kept_count,
    width_gate,
    width_mask,
)
from speechbrain_kd.objectives.complexity import (
    ComplexityLoss,
    complexity_loss,
)

SMALL = dict(
    input_size=20,
    channels=[16, 16, 16, 16, 40],
    kernel_sizes=[5, 3, 3, 3, 1],
    dilations=[1, 2, 3, 4, 1],
    attention_channels=12,
    res2net_scale=4,
    se_channels=6,
    lin_neurons=10,
)
ALL_GROUPS = ("channels", "mfa", "attention", "se")


pytestmark = pytest.mark.usefixtures("one_thread")


def small_model(seed=0, **kwargs):
    torch.manual_seed(seed)
    return DynamicECAPA(**dict(SMALL, dynamic=ALL_GROUPS, **kwargs))


def randomise_norms(model, seed=1):
    """Non-trivial BatchNorm statistics and affine parameters."""
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=gen))
            module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            module.weight.data.copy_(torch.randn(n, generator=gen))
            module.bias.data.copy_(torch.randn(n, generator=gen))


def counted_macs(model, frames, input_size=SMALL["input_size"]):
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(torch.randn(1, frames, input_size))
    return counter.get_total_flops() / 2


# Gates ------------------------------------------------------------------


def test_width_mask_values_and_gradient():
    k = torch.tensor(2.3, requires_grad=True)
    mask, boundary, frac = width_mask(k, 5)
    torch.testing.assert_close(mask, torch.tensor([1, 1, 0.3, 0, 0]))
    assert boundary.tolist() == [False, False, True, False, False]
    mask.sum().backward()
    assert k.grad == 1.0  # d(active features)/dK = 1
    full, boundary, _ = width_mask(torch.tensor(5.0), 5)
    assert full.tolist() == [1.0] * 5 and not boundary.any()


def test_gate_noise_is_variance_matched_and_only_in_training():
    torch.manual_seed(0)
    x = torch.randn(64, 8, 50) * torch.arange(1, 9).view(1, 8, 1)
    k = torch.tensor(3.0)  # frac 0: channel 3 is pure noise
    y = width_gate(x, k, units=8, noise=True)
    torch.testing.assert_close(y[:, :3], x[:, :3])
    assert (y[:, 4:] == 0).all()
    ratio = float(y[:, 3].std() / x[:, 3].std())
    assert 0.95 < ratio < 1.05
    assert float((y[:, 3] * x[:, 3]).mean()).__abs__() < 0.2 * 16
    # eval: deterministic, f * x at the boundary
    y = width_gate(x, torch.tensor(3.25), units=8, noise=False)
    torch.testing.assert_close(y[:, 3], 0.25 * x[:, 3])
    torch.testing.assert_close(
        width_gate(x, torch.tensor(3.25), 8), y
    )  # same twice


def old_width_gate(x, k, units, noise=False):
    """width_gate as it was, with a host-device sync (``boundary.any()``)."""
    mask, boundary, frac = width_mask(k, units)
    repeats = x.shape[1] // units
    y = x * mask.repeat(repeats).to(x.dtype).view(1, -1, 1)
    if noise and bool(boundary.any()):
        sel = boundary.repeat(repeats).view(1, -1, 1)
        std = x.detach().std(dim=(0, 2), correction=0, keepdim=True)
        n = torch.randn_like(x) * std * sel.to(x.dtype)
        y = y + (1 - frac).to(x.dtype) * n
    return y


class NoHostSync:
    """Makes the Python-level ways of reading a tensor on the host (bool,
    float, int, item, tolist) raise, e.g. to check a forward pass."""

    NAMES = ("__bool__", "__float__", "__int__", "item", "tolist")

    def __enter__(self):
        self.saved = {n: getattr(torch.Tensor, n) for n in self.NAMES}

        def refuse(*args, **kwargs):
            raise AssertionError("host-device synchronisation")

        for name in self.NAMES:
            setattr(torch.Tensor, name, refuse)

    def __exit__(self, *exc):
        for name, method in self.saved.items():
            setattr(torch.Tensor, name, method)


@pytest.mark.parametrize("units,channels", [(8, 8), (3, 12)])
def test_gate_same_as_before_without_sync(units, channels):
    """Same outputs and gradients, bit for bit, as the gate with the
    ``boundary.any()`` sync, for a fixed seed, in training (noise) and eval
    mode. At full width (no boundary channel) the output is the same too,
    but the Gaussian is drawn (and multiplied by zero): one more
    ``randn_like`` on the global generator than before."""
    x0 = torch.randn(4, channels, 30) * 3
    for k_value in (0.0, 0.5, 1.0, 2.25, units - 0.75, float(units)):
        for noise in (True, False):
            outs = []
            for gate in (old_width_gate, width_gate):
                x = x0.clone().requires_grad_()
                k = torch.tensor(k_value, requires_grad=True)
                torch.manual_seed(3)
                y = gate(x, k, units, noise=noise)
                y.pow(2).sum().backward()
                outs.append((y.detach(), x.grad, k.grad))
            for old, new in zip(*outs):
                assert torch.equal(old, new), (k_value, noise)
    # the RNG draws: the same below full width, one more at full width
    for k_value, same in ((units - 0.5, True), (float(units), False)):
        states = []
        for gate in (old_width_gate, width_gate):
            torch.manual_seed(3)
            gate(x0, torch.tensor(k_value), units, noise=True)
            states.append(torch.get_rng_state())
        assert torch.equal(*states) == same
    with NoHostSync():
        for k_value in (2.25, float(units)):
            width_gate(x0, torch.tensor(k_value), units, noise=True)
    with pytest.raises(AssertionError, match="synchronisation"), NoHostSync():
        old_width_gate(x0, torch.tensor(2.25), units, noise=True)


def test_training_forward_reads_nothing_on_the_host():
    """A training-mode forward of a dynamic student (gates with noise, at
    full and at fractional widths) reads no tensor on the host: no
    synchronisation with the device per step."""
    model = DynamicECAPA(dynamic=ALL_GROUPS, **SMALL).train()
    x, lengths = torch.randn(2, 50, 20), torch.tensor([1.0, 0.8])
    for fraction in (1.0, 0.6):
        model.set_fractions(**{g: fraction for g in ALL_GROUPS})
        with NoHostSync():
            model(x, lengths).sum().backward()


def test_chunked_gate_matches_res2net_chunks():
    x = torch.ones(1, 12, 1)
    y = width_gate(x, torch.tensor(1.5), units=3)
    assert y.flatten().tolist() == [1, 0.5, 0] * 4


# Gradients --------------------------------------------------------------


def test_task_gradient_reaches_every_width():
    model = small_model()
    with torch.no_grad():
        model.set_fractions(channels=0.6, mfa=0.55, attention=0.5, se=0.5)
    model.train()
    out = model(torch.randn(4, 30, 20))
    out.pow(2).sum().backward()
    for group in ALL_GROUPS:
        grad = model.width[group].grad
        assert grad is not None and torch.isfinite(grad), group
        assert grad != 0, group


@pytest.mark.parametrize("mode", ["abs", "squared", "hinge"])
def test_complexity_gradient_sign(mode):
    model = small_model()
    term = ComplexityLoss(model, target=0.3, mode=mode)
    assert float(model.flops_ratio().detach()) == 1.0
    term().backward()
    for group in ALL_GROUPS:  # above target: descent narrows every group
        assert model.width[group].grad > 0, group
    before = float(model.flops_ratio().detach())
    with torch.no_grad():
        for p in model.width.values():
            p -= 0.05 * p.grad
    assert float(model.flops_ratio().detach()) < before
    # below target: abs / squared push up, hinge leaves it alone
    model.zero_grad()
    with torch.no_grad():
        model.set_fractions(channels=0.2, mfa=0.2, attention=0.2, se=0.2)
    assert float(model.flops_ratio().detach()) < 0.3
    term().backward()
    grad = model.width["channels"].grad
    assert grad == 0 if mode == "hinge" else grad < 0


def test_complexity_loss_values_and_errors():
    r = torch.tensor(0.4)
    assert float(complexity_loss(r, 0.25)) == pytest.approx(0.15)
    assert float(complexity_loss(r, 0.25, "squared")) == pytest.approx(0.0225)
    with pytest.raises(ValueError, match="mode"):
        complexity_loss(r, 0.25, "cubic")
    with pytest.raises(ValueError, match=r"target must be in \(0, 1\]"):
        ComplexityLoss(small_model(), target=1.5)
    with pytest.raises(TypeError, match="flops_ratio"):
        ComplexityLoss(torch.nn.Linear(2, 2), target=0.5)


# FLOPs ------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        dict(channels=[24, 16, 16, 16, 40]),  # shortcut in the first block
        dict(global_context=False, lin_neurons=7),
        dict(channels=[8, 8, 8, 8, 13], attention_channels=5, se_channels=3),
    ],
)
def test_ecapa_macs_matches_flop_counter(kwargs):
    cfg = dict(SMALL, **kwargs)
    torch.manual_seed(0)
    plain = ECAPA_TDNN(**cfg)
    frames = 37
    analytic = ecapa_macs(
        cfg["input_size"],
        cfg["channels"],
        cfg["kernel_sizes"],
        cfg["attention_channels"],
        cfg["res2net_scale"],
        cfg["se_channels"],
        cfg.get("global_context", True),
        cfg["lin_neurons"],
        frames,
    )
    assert analytic == counted_macs(plain, frames)


@pytest.mark.parametrize(
    "fractions",
    [
        dict(channels=1.0, mfa=1.0, attention=1.0, se=1.0),
        dict(channels=0.5, mfa=0.5, attention=0.25, se=0.5),  # integer K
        dict(channels=0.3, mfa=0.61, attention=0.47, se=0.2),  # fractional
    ],
)
def test_flops_estimate_matches_counted_pruned_model(fractions):
    model = small_model(frames=41)
    with torch.no_grad():
        model.set_fractions(**fractions)
    plain = model.materialise()
    counted = counted_macs(plain, 41)
    assert model.macs(model.pruned_widths()) == counted
    # The differentiable estimate is the count at the continuous widths:
    # equal to the pruned model's when every K is an integer, a lower
    # bound otherwise (ceil), and 1.0 at full width.
    continuous = float(model.flops_ratio().detach()) * model.macs()
    ks = [float(model.k(g).detach()) for g in ALL_GROUPS]
    integer = all(k == int(k) for k in ks)
    if integer:
        assert continuous == pytest.approx(counted, rel=1e-6)
    else:
        assert continuous < counted
    if fractions["channels"] == 1.0:
        assert counted == counted_macs(model, 41)  # the full model


# Pruning ----------------------------------------------------------------


@pytest.mark.parametrize("global_context", [True, False])
def test_pruned_model_equals_masked_model(global_context):
    model = small_model(global_context=global_context)
    randomise_norms(model)
    with torch.no_grad():
        model.set_fractions(channels=0.45, mfa=0.33, attention=0.6, se=0.5)
    plain = model.materialise()
    assert type(plain) is ECAPA_TDNN
    assert plain.channels == [8, 8, 8, 8, 14]  # 4 chunks * ceil(1.8)
    assert plain.asp.tdnn.conv.conv.weight.shape[0] == 8
    assert plain.blocks[1].se_block.conv1.conv.weight.shape[0] == 3
    x = torch.randn(3, 45, 20)
    lengths = torch.tensor([1.0, 0.7, 0.4])
    model.eval()
    torch.testing.assert_close(
        model(x, lengths), plain(x, lengths), atol=2e-5, rtol=1e-4
    )
    # Pruning removes parameters; the full-width model is unchanged.
    n_plain = sum(p.numel() for p in plain.parameters())
    assert n_plain < 0.5 * sum(p.numel() for p in model.parameters())


def test_plain_definition_builds_the_pruned_architecture():
    from hyperpyyaml import load_hyperpyyaml

    model = small_model()
    with torch.no_grad():
        model.set_fractions(channels=0.5, mfa=0.5)
    text = model.plain_definition().replace("\n", "\n    ")
    built = load_hyperpyyaml("model: " + text)["model"]
    plain = model.materialise()
    assert type(built) is ECAPA_TDNN
    assert built.channels == plain.channels
    assert {k: v.shape for k, v in built.state_dict().items()} == {
        k: v.shape for k, v in plain.state_dict().items()
    }


def test_invalid_configurations():
    with pytest.raises(ValueError, match=r"channels\[:-1\] must be equal"):
        DynamicECAPA(**dict(SMALL, channels=[16, 8, 16, 16, 40]))
    with pytest.raises(ValueError, match="divisible by res2net_scale"):
        DynamicECAPA(**dict(SMALL, channels=[18, 18, 18, 18, 40]))
    with pytest.raises(ValueError, match="distinct groups"):
        DynamicECAPA(**dict(SMALL, dynamic=["channels", "width"]))
    with pytest.raises(ValueError, match="not a dynamic group"):
        DynamicECAPA(**dict(SMALL, dynamic=["mfa"])).set_fractions(se=0.5)


# A tiny run -------------------------------------------------------------


def test_complexity_term_reaches_target_on_tiny_run():
    """Task loss + complexity term with Adam: the FLOPs settle at the
    target, and the projection keeps every width in range."""
    model = small_model(k_scale=5.0)
    torch.manual_seed(0)
    teacher = ECAPA_TDNN(**SMALL).eval()
    term = ComplexityLoss(model, target=0.25)
    opt = torch.optim.Adam(model.parameters(), lr=0.002)
    x = torch.randn(16, 20, 20)
    with torch.no_grad():
        goal = teacher(x)
    ratios = []
    for step in range(120):
        model.train()
        idx = torch.randint(0, 16, (8,))
        task = (model(x[idx]) - goal[idx]).pow(2).mean()
        loss = task + 50.0 * term()
        opt.zero_grad()
        loss.backward()
        opt.step()
        ratios.append(float(model.flops_ratio().detach()))
    assert max(ratios[-20:]) - min(ratios[-20:]) < 0.05
    assert abs(sum(ratios[-20:]) / 20 - 0.25) < 0.03
    model.project_()
    for group in ALL_GROUPS:
        assert 0 < float(model.fraction(group).detach()) < 1
    plain = model.materialise()
    pruned = model.macs(model.pruned_widths()) / model.macs()
    assert pruned == pytest.approx(counted_macs(plain, 200) / model.macs())
    assert 0.2 < pruned < 0.4  # ceil rounding stays near the target


# YAML and recipe ----------------------------------------------------------


def load_tree(name):
    with open(RECIPE / "hparams" / f"{name}.yaml") as f:
        return ruamel.yaml.YAML().load(f)


def dump(tree):
    out = io.StringIO()
    ruamel.yaml.YAML().dump(tree, out)
    return [
        line.split(" #")[0]
        for line in out.getvalue().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_dyn_yaml_targets_and_trkd():
    """dyn_trkd.yaml --flops_target=T (the former dyn_trkd_050/025/0125):
    T reaches the complexity term and names the output folder; student,
    data and TRKD as trkd.yaml."""
    from hyperpyyaml import load_hyperpyyaml

    folders = set()
    for target in (0.5, 0.25, 0.125):
        with open(RECIPE / "hparams" / "dyn_trkd.yaml") as f:
            hp = load_hyperpyyaml(
                f, {"data_folder": "unused", "flops_target": target}
            )
        complexity = hp["distill_terms"]["complexity"]["fn"]
        assert float(complexity.target) == target
        assert complexity.model is hp["embedding_model"]
        assert hp["output_folder"] == f"results/mini/dyn_trkd_{target}/1986"
        assert hp["pruned_folder"].startswith(hp["output_folder"])
        folders.add(hp["output_folder"])
    assert len(folders) == 3
    trkd, dyn = load_tree("trkd"), load_tree("dyn_trkd")
    for key in ("channels", "emb_dim", "seed", "lr", "number_of_epochs"):
        assert dyn[key] == trkd[key], key
    assert dump(dyn["method"]) == dump(trkd["method"])
    assert dump(dyn["tau_schedule"]) == dump(trkd["tau_schedule"])
    assert dyn["distill_terms"]["trkd"].value == "<method[distill_terms][trkd]>"
    assert dyn["partition_T"] == trkd["partition_T"]


TINY = ["--emb_dim=32", *TINY_RUN]


def random_teacher(tiny_data, folder):
    """A random ECAPA teacher published from teacher_ecapa.yaml (no
    training: only the pipeline is under test)."""
    sys.path.insert(0, str(RECIPE))
    from hyperpyyaml import load_hyperpyyaml
    from mini_prepare import prepare_mini

    from speechbrain_kd.export import export_pretrained
    from speechbrain_kd.teachers import label_encoder_from_csv

    prep = folder / "prep"
    prepare_mini(
        str(tiny_data),
        str(prep),
        arabic_valid_utts=2,
        arabic_trials=40,
        libri_trials=20,
    )
    overrides = {
        "data_folder": str(tiny_data),
        "output_folder": str(folder / "teacher"),
        "channels": 16,
        "emb_dim": 32,
        "out_n_neurons": 9,
    }
    yaml_file = str(RECIPE / "hparams" / "teacher_ecapa.yaml")
    with open(yaml_file) as f:
        hp = load_hyperpyyaml(f, overrides)
    encoder = label_encoder_from_csv(
        str(prep / "train.csv"), str(folder / "labels.txt")
    )
    dest = folder / "teacher" / "pretrained"
    export_pretrained(str(dest), yaml_file, overrides, hp["modules"], encoder)
    return prep, dest


def test_dynamic_student_end_to_end(tiny_data, tmp_path):
    from speechbrain.inference.speaker import EncoderClassifier

    prep, teacher = random_teacher(tiny_data, tmp_path)
    out = tmp_path / "dyn"
    args = [
        "hparams/dyn_trkd.yaml",
        "--flops_target=0.25",
        f"--data_folder={tiny_data}",
        f"--output_folder={out}",
        f"--prep_folder={prep}",
        f"--teacher_source={teacher}",
        "--number_of_epochs=1",
        "--channels=16",
        "--complexity_weight=100.0",
        "--k_scale=20.0",
        *TINY,
    ]
    for script in ("train_kd.py", "prune_student.py"):
        proc = subprocess.run(
            [sys.executable, script, *args],
            cwd=RECIPE,
            capture_output=True,
            text=True,
            timeout=600,
            env=dict(os.environ, OMP_NUM_THREADS="1"),
        )
        assert proc.returncode == 0, f"{script}:\n{proc.stderr[-4000:]}"
    log = (out / "train_log.txt").read_text()
    assert "train complexity:" in log and "complexity_flops_ratio" in log
    facts = json.loads((out / "pruning.json").read_text())
    # The widths moved (a few steps at k_scale 20) and the FLOPs of the
    # published plain model are what the analytic count says.
    assert facts["flops_ratio_pruned"] < 1.0
    assert facts["macs_pruned"] == facts["macs_pruned_counted"]
    assert facts["max_abs_diff_masked_vs_pruned"] < 1e-4
    result = json.loads((out / "verification.json").read_text())
    # Embeddings within 1e-4, so scores within ~1e-4: the EERs agree up to
    # one target / non-target pair swapping order at the threshold (the
    # float32 noise of the two models is machine-dependent).
    masked, scored = result["student"], result["pruned"]
    pairs = min(masked["target_trials"], masked["nontarget_trials"])
    assert abs(scored["EER"] - masked["EER"]) <= 100.0 / pairs + 1e-9
    pruned = EncoderClassifier.from_hparams(
        source=str(out / "pruned"), savedir=str(tmp_path / "load")
    )
    model = pruned.mods.embedding_model
    assert type(model) is ECAPA_TDNN
    assert model.channels[0] == facts["pruned_widths"]["channels"]
    text = (out / "pruned" / "hyperparams.yaml").read_text()
    assert "DynamicECAPA" not in text
    emb = pruned.encode_batch(torch.randn(2, 16000))
    assert emb.shape == (2, 1, 32)
    # both cards count their model's MACs (3 s of audio, features included)
    macs = {}
    for folder in ("pretrained", "pruned"):
        card = (out / folder / "README.md").read_text()
        found = re.search(r"\| MACs per 3 s[^|]*\| ([\d,.]+) M \|", card)
        assert found, f"{folder}/README.md:\n{card}"
        macs[folder] = float(found.group(1).replace(",", ""))
    assert 0 < macs["pruned"] < macs["pretrained"]
    # the run's record carries the pruned model, counted as the card does
    record = json.loads((out / "record.json").read_text())
    assert record["pruning"] == facts
    assert record["pruned_parameters"] == facts["params_pruned"]
    assert round(record["pruned_macs_3s"] / 1e6, 1) == macs["pruned"]
    # the pruned folder records its own decision thresholds
    thresholds = pruned.hparams.verification_thresholds
    assert thresholds["trial_list"] and "eer" in thresholds


def test_kept_count_is_ceil():
    assert kept_count(torch.tensor(2.25)) == 3
    assert kept_count(torch.tensor(3.0)) == 3
