"""Speaker-verification scoring: embeddings, back-ends, metrics, outputs.

Modules: ``embeddings`` (``extract_embeddings``), ``norms`` (cosine of the
trial pairs and z/t/s/as-norm against a cohort), ``plda`` (PLDA training
and pair scores), ``scores`` (``score_trials`` with one back-end, score
files), ``metrics`` (EER, minDCF, operating points, ``detection_metrics``),
``calibration`` (Cllr, linear calibration),
``bootstrap`` (confidence intervals by resampling speakers) and
``evaluate`` (``verify``: every trial list with every back-end of a
recipe). Every public name is importable from ``speechbrain_kd.scoring``,
with those of ``speechbrain_kd.card_thresholds`` (the thresholds and
calibration of a published folder: ``thresholds_yaml``,
``thresholds_card``, ``far_key``...).
"""

from speechbrain_kd.card_thresholds import (
    DRIFT_NOTE,
    RATE_KEYS,
    check_calibration,
    check_thresholds,
    far_key,
    far_label,
    p_far,
    thresholds_card,
    thresholds_yaml,
)
from speechbrain_kd.scoring.bootstrap import (
    eer_of,
    interval,
    min_dcf_of,
    resamples,
    speaker_index,
)
from speechbrain_kd.scoring.calibration import (
    calibrated_llr,
    cllr,
    fit_linear_calibration,
    linear_calibration,
    min_cllr,
    pav,
    pav_llrs,
)
from speechbrain_kd.scoring.embeddings import extract_embeddings
from speechbrain_kd.scoring.evaluate import (
    backend_rows,
    scoring_methods,
    trial_lists,
    verify,
)
from speechbrain_kd.scoring.metrics import (
    FAR_TARGETS,
    compute_eer,
    compute_min_dcf,
    det_points,
    detection_metrics,
    error_rates,
    operating_points,
    published_thresholds,
    rates_at,
    threshold_at_far,
)
from speechbrain_kd.scoring.norms import (
    cohort_stats,
    normalize_scores,
    pair_cosine,
    trial_indices,
)
from speechbrain_kd.scoring.plda import plda_pair_scores, train_plda
from speechbrain_kd.scoring.scores import (
    SCORING_METHODS,
    read_scores,
    score_trials,
    write_scores,
)

__all__ = [
    "DRIFT_NOTE",
    "FAR_TARGETS",
    "RATE_KEYS",
    "SCORING_METHODS",
    "backend_rows",
    "calibrated_llr",
    "check_calibration",
    "check_thresholds",
    "cllr",
    "cohort_stats",
    "compute_eer",
    "compute_min_dcf",
    "det_points",
    "detection_metrics",
    "eer_of",
    "error_rates",
    "extract_embeddings",
    "far_key",
    "far_label",
    "fit_linear_calibration",
    "interval",
    "linear_calibration",
    "min_cllr",
    "min_dcf_of",
    "normalize_scores",
    "operating_points",
    "p_far",
    "pair_cosine",
    "pav",
    "pav_llrs",
    "plda_pair_scores",
    "published_thresholds",
    "rates_at",
    "read_scores",
    "resamples",
    "score_trials",
    "scoring_methods",
    "speaker_index",
    "threshold_at_far",
    "thresholds_card",
    "thresholds_yaml",
    "train_plda",
    "trial_indices",
    "trial_lists",
    "verify",
    "write_scores",
]
