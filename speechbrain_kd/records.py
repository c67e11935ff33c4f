"""Run records: the ``record.json`` a finished run leaves, and the seed
statistics and paired differences the benchmark tables compute from them.

A record holds, per model (``teacher``, ``student``), trial list and
scoring back-end, the EER (%) and normalised minDCF on all trials and on
speaker-bootstrap replicates (a trial belongs to its enrolment speaker;
the resamples depend only on the trial list and the bootstrap seed, so
replicate ``r`` of two runs is the same draw of speakers), the DET points,
plus the run's parameters, MACs per 3 s, command, wall time, epoch
history (``train_log.txt`` as numbers) and the method's label.
"""

import json
import os
import sys
import time

import numpy

from speechbrain_kd.fileio import atomic_write_text
from speechbrain_kd.scoring.bootstrap import eer_of, min_dcf_of, resamples
from speechbrain_kd.scoring.metrics import det_points
from speechbrain_kd.scoring.scores import read_scores
from speechbrain_kd.scoring.seeds import seed_speaker_interval, seed_t_interval

RECORD_NAME = "record.json"
RESAMPLES, BOOTSTRAP_SEED = 1000, 0  # the same draws for every record
STARTED = time.time()  # imported when the recipe starts


def score_figures(
    path, speaker_of, num=RESAMPLES, seed=BOOTSTRAP_SEED, p_target=0.01
):
    """EER / minDCF of one score file, on all trials and ``num`` speaker
    resamples (``None`` where a resample has one class), and its DET.

    ``speaker_of``: ``{utterance ID: speaker}`` of the enrolment IDs."""
    enrol, labels, scores = read_scores(path)
    missing = sorted({e for e in enrol if e not in speaker_of})
    if missing:
        raise ValueError(
            f"{path}: enrolment IDs not in the test manifest, e.g. "
            f"{missing[:3]}"
        )
    eers, dcfs = [], []
    for idx in resamples([speaker_of[e] for e in enrol], num, seed):
        y = labels[idx]
        one_class = y.min() == y.max()
        eers.append(None if one_class else round(eer_of(scores[idx], y), 4))
        dcfs.append(
            None
            if one_class
            else round(min_dcf_of(scores[idx], y, p_target), 5)
        )
    far, frr = det_points(scores[labels == 1], scores[labels == 0], 60)
    return {
        "EER": round(eer_of(scores, labels), 4),
        "minDCF_norm": round(min_dcf_of(scores, labels, p_target), 5),
        "speakers": len({speaker_of[e] for e in enrol}),
        "trials": int(len(labels)),
        "EER_replicates": eers,
        "minDCF_norm_replicates": dcfs,
        "det": [
            [round(float(a), 6), round(float(b), 6)] for a, b in zip(far, frr)
        ],
    }


def make_record(score_dir, speaker_of, models, **info):
    """A record of the score files ``<model>_<list>_<back-end>.txt`` in
    ``score_dir`` for ``models``; ``info`` (label, parameters, macs_3s,
    command, seed, epochs, history...) is kept as given."""
    record = {
        "models": {},
        "resamples": RESAMPLES,
        "bootstrap_seed": BOOTSTRAP_SEED,
    }
    for name in sorted(os.listdir(score_dir)):
        model, _, rest = name[: -len(".txt")].partition("_")
        trial_list, _, backend = rest.rpartition("_")
        if model not in models or not name.endswith(".txt"):
            continue
        path = os.path.join(score_dir, name)
        lists = record["models"].setdefault(model, {})
        lists.setdefault(trial_list, {})[backend] = score_figures(
            path, speaker_of
        )
    record.update(info)
    record.setdefault("wall_seconds", round(time.time() - STARTED, 1))
    record.setdefault("command", [os.path.basename(sys.argv[0])] + sys.argv[1:])
    return record


def write_record(folder, record):
    """Writes ``folder/record.json`` atomically."""
    text = json.dumps(record, separators=(",", ":"), sort_keys=True)
    atomic_write_text(os.path.join(folder, RECORD_NAME), text + "\n")


def read_record(folder):
    """The record in ``folder``, or None when the run has none."""
    path = os.path.join(folder, RECORD_NAME)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not a JSON record ({err})") from None


def load_records(root):
    """``{seed: record}`` of the runs ``root/<seed>/`` that have a record."""
    runs = {}
    for seed in sorted(os.listdir(root)) if os.path.isdir(root) else ():
        record = read_record(os.path.join(root, seed))
        if record is not None:
            runs[int(seed)] = record
    return runs


def figures(record, model="student", trial_list="trials", backend="cosine"):
    """The figures of one model, trial list and back-end of a record."""
    try:
        return record["models"][model][trial_list][backend]
    except KeyError:
        raise KeyError(
            f"record has no {model}/{trial_list}/{backend} figures "
            f"(has: {sorted(record.get('models', {}))})"
        ) from None


def seed_summary(runs, key="EER", **where):
    """``(seeds, mean, std)`` of ``key`` over ``{seed: record}``: of the
    values ``figures(record, **where)[key]``, std with ddof 1 (None for one
    seed).
    """
    values = [figures(r, **where)[key] for r in runs.values()]
    std = float(numpy.std(values, ddof=1)) if len(values) > 1 else None
    return len(values), float(numpy.mean(values)), std


def _replicates(runs, key, where):
    return {
        seed: numpy.array(
            [
                numpy.nan if v is None else v
                for v in figures(r, **where)[key + "_replicates"]
            ]
        )  # fmt: skip
        for seed, r in runs.items()
    }


def paired_difference(a, b, key="EER", where_a=None, where_b=None):
    """The paired difference ``a - b`` of two rows ``{seed: record}``.

    Returns a dict: ``seeds``, ``per_seed`` (differences on all trials),
    ``mean``, ``speakers`` (95 % interval over speaker resamples, seeds
    averaged inside each), ``speakers_seeds`` (speakers and seeds
    resampled together), ``t`` (Student interval of the per-seed
    differences; None with one seed) and ``resolved`` (both intervals
    that include the seeds exclude 0; with one seed: never).
    """
    where_a, where_b = where_a or {}, where_b or {}
    rep_a, rep_b = _replicates(a, key, where_a), _replicates(b, key, where_b)
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError("paired_difference: the rows share no seed")
    ok = numpy.ones_like(rep_a[seeds[0]], dtype=bool)
    for s in seeds:
        ok &= ~numpy.isnan(rep_a[s]) & ~numpy.isnan(rep_b[s])
    diffs = numpy.mean([rep_a[s][ok] - rep_b[s][ok] for s in seeds], axis=0)
    _, low, high = seed_speaker_interval(
        {s: rep_a[s][ok] for s in seeds}, {s: rep_b[s][ok] for s in seeds}
    )
    full_a = {s: figures(a[s], **where_a)[key] for s in seeds}
    full_b = {s: figures(b[s], **where_b)[key] for s in seeds}
    _, mean, t_low, t_high = seed_t_interval(full_a, full_b)
    resolved = t_low is not None and (
        (high < 0 and t_high < 0) or (low > 0 and t_low > 0)
    )
    return {
        "seeds": seeds,
        "per_seed": [full_a[s] - full_b[s] for s in seeds],
        "mean": mean,
        "speakers": tuple(
            float(x) for x in numpy.percentile(diffs, [2.5, 97.5])
        ),
        "speakers_seeds": (low, high),
        "t": None if t_low is None else (t_low, t_high),
        "resolved": bool(resolved),
    }
