#!/usr/bin/env python3
"""Method table, DET curves, tau curriculum and EER-vs-size plots.

Reads the runs of ``bench/run_method_table.sh`` (and of the multi-level and
learned-width recipes when they exist) under ``--results`` (default
``recipes/MiniSpeakers/results/mini``), writes ``bench/RESULTS.md`` and the
PNGs of ``bench/figures/``:

- logit distillation (same ECAPA C=96 student, same data, same teacher,
  seeds under ``tab4/<method>/<seed>/``): EER and minDCF mean +- standard
  deviation over seeds, parameters and MACs (3 s of audio);
- multi-level x-vector KD (``ml_*/1986``, x-vector teacher
  ``teacher_xvector/1986``): cosine and PLDA back-ends; runs scored before
  the recipes wrote per-trial scores are scored again here (cached in
  ``<results>/bench_scores``);
- learned-width students (``dyn_trkd_*/1986/pruned``: ``dyn_trkd.yaml
  --flops_target=T`` writes ``dyn_trkd_T``; per-target names
  ``dyn_trkd_050`` etc. are read too) against fixed widths
  (``trkd4_c*/1986``);
- ``det_curves.png`` (seed 1986 of each method, cosine), ``tau.png`` (the
  TRKD curriculum of ``trkd.yaml`` and of the 4-epoch table runs),
  ``eer_vs_params.png`` (every student, Pareto front).

    python bench/method_table.py --data_folder ../shared/data \\
        --teacher recipes/MiniSpeakers/results/mini/teacher_ecapa/1986
"""

import argparse
import glob
import json
import math
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "MiniSpeakers"
METHODS = [
    ("nokd", "no KD (task loss only)"),
    ("kd", "KD (Hinton, T=4)"),
    ("dkd", "DKD (alpha 1, beta 8)"),
    ("gkd", "GKD (primary 90 %, 1 / 8)"),
    ("trkd", "TRKD (tau 1 -> 0.05)"),
    ("mixer_trkd", "TRKD, MLP-Mixer student (mixer_trkd.yaml)"),
]
TEACHER_LABEL = "teacher ECAPA C=256"
ML_RUNS = [
    ("ml_nokd", "small x-vector", "none (task loss only)"),
    ("ml_utt", "small x-vector", "utterance (segment6)"),
    ("ml_frame", "small x-vector", "frame (narrowBN + wideBN)"),
    ("ml_stats", "small x-vector", "aggregated: stats pooling of frame1-5"),
    ("ml_lde", "small x-vector", "aggregated: LDE of frame1-5"),
    ("ml_concat", "small x-vector", "concat (segment6 + narrowBN + wideBN)"),
    ("ml_ecapa_nokd", "small ECAPA C=96", "none (task loss only)"),
    ("ml_ecapa_concat", "small ECAPA C=96", "concat (as above)"),
]


def read_json(path):
    with open(path) as f:
        return json.load(f)


def model_size(folder, cache):
    """(parameters, MACs of 3 s) of a published folder, cached."""
    folder = os.path.abspath(folder)
    if folder in cache:
        return cache[folder]
    from speechbrain.inference.speaker import EncoderClassifier

    from speechbrain_kd.model_size import count_parameters, embedding_macs

    model = EncoderClassifier.from_hparams(
        source=folder, savedir=os.path.join(folder, "..", "bench_reload")
    )
    size = (
        count_parameters(model.mods.embedding_model),
        embedding_macs(model.mods),
    )
    cache[folder] = size
    return size


def score_folder(folder, out_dir, data_folder, prep, scoring, name):
    """Scores a published folder on the recipe's trial list (cached)."""
    from speechbrain_kd.data import manifest_dataset, read_csv
    from speechbrain_kd.scoring import verify
    from speechbrain_kd.teachers import FrozenTeacher

    out = os.path.join(out_dir, "verification.json")
    if os.path.isfile(out) and name in read_json(out):
        return read_json(out)[name]
    hparams = {
        "verification_file": os.path.join(prep, "veri_test2.txt"),
        "train_csv": os.path.join(prep, "train.csv"),
        "test_dataloader_opts": {"batch_size": 16},
        "output_folder": out_dir,
        "p_target": 0.01,
        "scoring": scoring,
        "save_scores": True,
        "data_folder": data_folder,
        "sample_rate": 16000,
    }
    model = FrozenTeacher.from_pretrained(
        folder, savedir=os.path.join(out_dir, "model")
    )
    test_set = manifest_dataset(
        read_csv(os.path.join(prep, "test.csv")), hparams
    )
    return verify(model.encode, test_set, hparams, name)


def figures_of(result, backend="cosine"):
    """(EER %, normalised minDCF) of one back-end of a verification.json
    entry (older entries hold the cosine figures only, at top level)."""
    if "by_list" not in result and backend == "cosine":
        return result["EER"], result["minDCF"] / 0.01
    r = result["by_list"]["trials"][backend]
    return r["EER"], r["minDCF_norm"]


def mean_std(values):
    if not values:
        return float("nan"), float("nan")
    if len(values) == 1:
        return values[0], float("nan")
    return statistics.mean(values), statistics.stdev(values)


def fmt_ms(m, s, digits=2):
    if math.isnan(s):
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} +- {s:.{digits}f}"


def fmt_macs(macs):
    return "-" if macs is None else f"{macs / 1e6:,.0f} M"


def det_of(path):
    """(false alarm, miss) rates of a score file along its thresholds."""
    from speechbrain_kd.scoring import det_points, read_scores

    _, labels, scores = read_scores(path)
    return det_points(scores[labels == 1], scores[labels == 0])


# ---------------------------------------------------------------- tables


def method_rows(results, sizes, teacher_dir):
    rows, det = [], {}
    for method, label in METHODS:
        runs = sorted(glob.glob(os.path.join(results, "tab4", method, "*")))
        runs = [r for r in runs if os.path.isfile(f"{r}/verification.json")]
        if not runs:
            continue
        eers, dcfs, seeds = [], [], []
        for run in runs:
            eer, dcf = figures_of(
                read_json(f"{run}/verification.json")["student"]
            )
            eers.append(eer)
            dcfs.append(dcf)
            seeds.append(os.path.basename(run))
        params, macs = model_size(f"{runs[0]}/pretrained", sizes)
        scores = f"{runs[0]}/scores/student_trials_cosine.txt"
        if os.path.isfile(scores):
            det[label] = scores
        if TEACHER_LABEL not in det:
            t_scores = f"{runs[0]}/scores/teacher_trials_cosine.txt"
            if os.path.isfile(t_scores):
                det[TEACHER_LABEL] = t_scores
        rows.append(
            {
                "method": label,
                "seeds": ",".join(seeds),
                "eer": mean_std(eers),
                "dcf": mean_std(dcfs),
                "eers": eers,
                "params": params,
                "macs": macs,
            }
        )
    teacher = None
    if teacher_dir and os.path.isfile(f"{teacher_dir}/verification.json"):
        res = read_json(f"{teacher_dir}/verification.json")["teacher"]
        params, macs = model_size(f"{teacher_dir}/pretrained", sizes)
        teacher = {
            "eer": figures_of(res),
            "params": params,
            "macs": macs,
        }
    return rows, det, teacher


def ml_rows(results, sizes, data_folder):
    prep = os.path.join(results, "prepared")
    cache = os.path.join(results, "bench_scores")
    rows = []
    runs = [("teacher_xvector", "x-vector teacher", "-")] + ML_RUNS
    for name, model, target in runs:
        run = os.path.join(results, name, "1986")
        if not os.path.isfile(f"{run}/verification.json"):
            continue
        role = "teacher" if name.startswith("teacher") else "student"
        res = read_json(f"{run}/verification.json")[role]
        if "plda" not in res.get("by_list", {}).get("trials", {}):
            if data_folder is None:
                print(f"{name}: no PLDA scores; give --data_folder")
                continue
            res = score_folder(
                f"{run}/pretrained",
                os.path.join(cache, name),
                data_folder,
                prep,
                ["cosine", "plda"],
                role,
            )
        params, macs = model_size(f"{run}/pretrained", sizes)
        rows.append(
            {
                "name": name,
                "model": model,
                "target": target,
                "cos": figures_of(res, "cosine"),
                "plda": figures_of(res, "plda"),
                "params": params,
                "macs": macs,
            }
        )
    return rows


def width_rows(results, sizes):
    rows = []
    for run in sorted(glob.glob(os.path.join(results, "trkd4_c*", "1986"))):
        if not os.path.isfile(f"{run}/verification.json"):
            continue
        c = run.split("trkd4_c")[1].split("/")[0]
        res = read_json(f"{run}/verification.json")["student"]
        params, macs = model_size(f"{run}/pretrained", sizes)
        rows.append((f"fixed C={c}", figures_of(res), params, macs))
    for run in sorted(glob.glob(os.path.join(results, "dyn_trkd_*", "1986"))):
        if not os.path.isfile(f"{run}/pruning.json"):
            continue
        res = read_json(f"{run}/verification.json")["student"]
        target = run.split("dyn_trkd_")[1].split("/")[0]
        if "." not in target:  # dyn_trkd_025: per-target run names
            target = f"0.{target[1:]}"
        params, macs = model_size(f"{run}/pruned", sizes)
        rows.append(
            (
                f"learned width, target {target}",
                figures_of(res),
                params,
                macs,
            )
        )
    return rows


# ---------------------------------------------------------------- plots


def plot_det(det, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import norm

    fig, ax = plt.subplots(figsize=(5.5, 5))
    ticks = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4]
    for label, scores in det.items():
        far, frr = det_of(scores)
        keep = (far > 1e-4) & (frr > 1e-4) & (far < 0.6) & (frr < 0.6)
        style = "k--" if "teacher" in label else "-"
        ax.plot(norm.ppf(far[keep]), norm.ppf(frr[keep]), style, label=label)
    ax.set_xticks(norm.ppf(ticks), [f"{100 * t:g}" for t in ticks])
    ax.set_yticks(norm.ppf(ticks), [f"{100 * t:g}" for t in ticks])
    ax.set_xlabel("false alarm rate (%)")
    ax.set_ylabel("miss rate (%)")
    ax.set_title("DET, mini corpus trials (cosine, seed 1986)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_tau(path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from hyperpyyaml import load_hyperpyyaml

    with open(RECIPE / "hparams" / "trkd.yaml") as f:
        hp = load_hyperpyyaml(f, {"data_folder": "unused"})
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    sched = hp["tau_schedule"]
    epochs = list(range(1, hp["number_of_epochs"] + 1))
    ax.step(
        epochs,
        [sched(e) for e in epochs],
        "o-",
        where="post",
        label="trkd.yaml (10 epochs)",
    )
    with open(RECIPE / "hparams" / "trkd.yaml") as f:
        hp4 = load_hyperpyyaml(
            f,
            {
                "data_folder": "unused",
                "number_of_epochs": 4,
                "tau_schedule": {"start_epoch": 1, "end_epoch": 4},
            },
        )
    ax.step(
        [1, 2, 3, 4],
        [hp4["tau_schedule"](e) for e in [1, 2, 3, 4]],
        "s--",
        where="post",
        label="method table runs (4 epochs)",
    )
    ax.set_xlabel("epoch")
    ax.set_ylabel("tau (confusion-set cutoff)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("TRKD curriculum (exponential, gamma 0.001)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pareto(points):
    """Indices of the points no other point beats in both size and EER."""
    best, keep = float("inf"), []
    for i in sorted(range(len(points)), key=lambda i: points[i][0]):
        if points[i][1] < best:
            best = points[i][1]
            keep.append(i)
    return keep


def plot_pareto(groups, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    every = []
    for label, points, marker in groups:
        if not points:
            continue
        ax.scatter(
            [p[0] for p in points],
            [p[1] for p in points],
            marker=marker,
            label=label,
        )
        every += points
    front = [every[i] for i in pareto(every)]
    ax.plot(
        [p[0] for p in front],
        [p[1] for p in front],
        "k:",
        lw=1,
        label="Pareto front",
    )
    ax.set_xscale("log")
    ax.set_xlabel("embedding model parameters")
    ax.set_ylabel("EER (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("EER vs parameters, mini corpus, 4-epoch students")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- report


def speed_section(folder):
    """Markdown of kd_step_time.json and embed_speed.json, when present."""
    out = []
    step = os.path.join(folder, "kd_step_time.json")
    if os.path.isfile(step):
        f = read_json(step)
        out += [
            "",
            "## Training cost of distillation (`bench/kd_step_time.py`)",
            "",
            f"One `fit_batch` (forward, loss, backward, Adam step), batch "
            f"{f['batch']}, {f['device']}, {f['threads']} thread(s), median; "
            "plain, live-KD and cached-KD steps alternate in one process.",
            "",
            "| plain student step | KD step (" + f["method"] + "), live "
            "teacher | teacher forward alone | live ratio | KD step, "
            "teacher cache | cached ratio |",
            "|---|---|---|---|---|---|",
            f"| {f['plain_step_s']:.3f} s | {f['kd_step_s']:.3f} s | "
            f"{f['teacher_forward_s']:.3f} s | {f['ratio']:.2f} (target <= "
            f"{f['target']}: {'met' if f['met'] else 'not met'}) | "
            f"{f['cached_step_s']:.4f} s | {f['cached_ratio']:.3f} (target "
            f"<= {f['cached_target']}: "
            f"{'met' if f['cached_met'] else 'not met'}) |",
            "",
            f"Cache build: {f['cache_build_views_per_s']:g} views/s; "
            f"{f['cache_bytes_per_view_mini']} bytes per view for the mini "
            f"corpus ({f['cache_gb_per_million_views_mini']:g} GB per "
            "million views, full float16 logits); VoxCeleb2 (5,994 classes, "
            "top-255 logits + tail, 1.09 M utterances x 8 views): "
            f"{f['cache_gb_voxceleb2_8_views']:g} GB.",
        ]
    speed = os.path.join(folder, "embed_speed.json")
    if os.path.isfile(speed):
        f = read_json(speed)
        out += [
            "",
            "## Embedding time on CPU (`bench/embed_speed.py`)",
            "",
            f"One utterance of {f['seconds']:g} s, {f['threads']} thread(s), "
            "median of interleaved calls; ONNX = `speechbrain_kd.onnx` "
            "graph (Fbank + normalisation + embedding) in ONNX Runtime.",
            "",
            "| model | params | PyTorch | ONNX Runtime | max abs diff "
            "ONNX vs PyTorch |",
            "|---|---|---|---|---|",
        ]
        for role in ("student", "teacher"):
            out.append(
                f"| {role} | {f[role + '_params']:,} | "
                f"{f[role + '_pytorch_ms']:.1f} ms | "
                f"{f[role + '_onnx_ms']:.1f} ms | "
                f"{f[role + '_onnx_max_abs_diff']:.1e} |"
            )
        out += [
            "",
            f"Teacher / student: {f['teacher/student pytorch']:.2f}x "
            f"(PyTorch), {f['teacher/student onnx']:.2f}x (ONNX); student "
            f"PyTorch / ONNX: {f['student pytorch/onnx']:.2f}x.",
        ]
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(RECIPE / "results" / "mini"))
    parser.add_argument(
        "--teacher",
        default=None,
        help="ECAPA teacher run folder (has pretrained/)",
    )
    parser.add_argument(
        "--data_folder",
        default=None,
        help="needed to score runs without PLDA scores",
    )
    parser.add_argument("--out", default=str(ROOT / "bench"))
    parser.add_argument(
        "--extra", default=None, help="markdown file appended to RESULTS.md"
    )
    args = parser.parse_args(argv)
    results = os.path.abspath(args.results)
    teacher = args.teacher or os.path.join(results, "teacher_ecapa", "1986")
    figs = os.path.join(args.out, "figures")
    os.makedirs(figs, exist_ok=True)
    sizes = {}

    rows, det, t = method_rows(results, sizes, teacher)
    ml = ml_rows(results, sizes, args.data_folder)
    widths = width_rows(results, sizes)

    out = ["# Measured results (bench/)", ""]
    out += [
        "Mini corpus (real speech: Arabic Speech Commands + LibriSpeech "
        "samples, 269 training speakers, 4,600 trials among held-out "
        "speakers, EER binomial std ~0.6 pt). Regenerate: "
        "`bash bench/run_method_table.sh DATA_FOLDER TEACHER` then "
        "`python bench/method_table.py` (see README).",
        "",
        "## Logit distillation: same student, same data, several seeds",
        "",
        "Student ECAPA-TDNN C=96 (128-d), 4 epochs, batch 32 x 1 s, from the "
        "ECAPA C=256 teacher (TRKD: tau 1 -> 0.05 over epochs 1-4); mean +- "
        "standard deviation over seeds. Last row: the MLP-Mixer student "
        "(another architecture), same teacher, data and TRKD settings.",
        "",
        "| method | seeds | EER % | minDCF (norm., p=0.01) | params | "
        "MACs / 3 s |",
        "|---|---|---|---|---|---|",
    ]
    if t:
        out.append(
            f"| teacher ECAPA C=256 (8 epochs) | 1986 | {t['eer'][0]:.2f} | "
            f"{t['eer'][1]:.3f} | {t['params']:,} | {fmt_macs(t['macs'])} |"
        )
    for r in rows:
        out.append(
            f"| {r['method']} | {r['seeds']} | {fmt_ms(*r['eer'])} | "
            f"{fmt_ms(*r['dcf'], digits=3)} | {r['params']:,} | "
            f"{fmt_macs(r['macs'])} |"
        )
    if ml:
        out += [
            "",
            "## Multi-level x-vector KD (arXiv 2303.01125)",
            "",
            "Students trained 4 epochs from the x-vector teacher (8 epochs), "
            "seed 1986; PLDA trained on the 5,075 training segments.",
            "",
            "| student | teacher knowledge | EER % cosine | minDCF cosine | "
            "EER % PLDA | minDCF PLDA | params | MACs / 3 s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in ml:
            out.append(
                f"| {r['model']} | {r['target']} | {r['cos'][0]:.2f} | "
                f"{r['cos'][1]:.3f} | {r['plda'][0]:.2f} | "
                f"{r['plda'][1]:.3f} | {r['params']:,} | "
                f"{fmt_macs(r['macs'])} |"
            )
    if widths:
        out += [
            "",
            "## Learned widths vs fixed widths (TRKD, 4 epochs, seed 1986)",
            "",
            "| student | EER % | minDCF | params | MACs / 3 s |",
            "|---|---|---|---|---|",
        ]
        for label, (eer, dcf), params, macs in widths:
            out.append(
                f"| {label} | {eer:.2f} | {dcf:.3f} | {params:,} | "
                f"{fmt_macs(macs)} |"
            )
    out += speed_section(args.out)
    plot_tau(os.path.join(figs, "tau.png"))
    if det:
        plot_det(det, os.path.join(figs, "det_curves.png"))
    groups = [
        (
            "logit KD methods (mean of seeds)",
            [(r["params"], r["eer"][0]) for r in rows],
            "o",
        ),
        (
            "multi-level (x-vector / ECAPA students)",
            [
                (r["params"], r["cos"][0])
                for r in ml
                if r["name"] != "teacher_xvector"
            ],
            "^",
        ),
        (
            "TRKD, fixed and learned widths",
            [(p, e[0]) for _, e, p, _ in widths],
            "s",
        ),
    ]
    plot_pareto(groups, os.path.join(figs, "eer_vs_params.png"))
    out += [
        "",
        "## Plots",
        "",
        "![DET curves](figures/det_curves.png)",
        "![tau curriculum](figures/tau.png)",
        "![EER vs parameters](figures/eer_vs_params.png)",
        "",
    ]
    if args.extra and os.path.isfile(args.extra):
        out += [Path(args.extra).read_text()]
    text = "\n".join(out) + "\n"
    Path(args.out, "RESULTS.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
