"""The decision thresholds and score calibration of a published folder.

``export_pretrained(thresholds=..., calibration=...)``
(``speechbrain_kd.export``) writes them twice: ``thresholds_yaml`` gives
the ``verification_thresholds`` and ``score_calibration`` mappings of
``hyperparams.yaml`` (plain mappings, which ``from_hparams`` loads and
ignores), ``thresholds_card`` the section of the model card. The figures
come from ``speechbrain_kd.scoring`` (``operating_points``,
``linear_calibration``, ``published_thresholds``); ``check_thresholds``
and ``check_calibration`` check them. An operating point is named by its
false-accept rate (``far_key``: ``far_1pct``; ``p_far``, its inverse;
``far_label``, its name in the card).

Convention: a pair is accepted (same speaker) when ``score > threshold``,
as SpeechBrain's ``SpeakerRecognition.verify_batch`` decides.
"""

import io
import math

DRIFT_NOTE = (
    "Thresholds do not carry over between corpora: score distributions "
    "shift with language, channel and utterance duration, and with the "
    "score normalisation (these are raw cosine scores), so recalibrate on "
    "trials of your own domain "
    "(`speechbrain_kd.scoring.operating_points` on your scores)."
)

RATE_KEYS = ("threshold", "far", "frr")


def far_key(far):
    """The key of the operating point at false-accept rate ``far``.

    Example
    -------
    >>> far_key(0.01), far_key(0.001)
    ('far_1pct', 'far_0.1pct')
    """
    far = float(far)
    if not 0.0 < far < 1.0:
        raise ValueError(f"A false-accept rate must be in (0, 1), got {far}")
    return f"far_{100 * far:g}pct"


def p_far(key):
    """The false-accept rate of an operating-point key (``far_key``'s
    inverse).

    Example
    -------
    >>> p_far("far_0.1pct")
    0.001
    """
    try:
        return float(key[len("far_") : -len("pct")]) / 100
    except ValueError:
        raise ValueError(
            f"{key!r} is not an operating-point key: expected far_<x>pct, "
            "e.g. far_1pct"
        ) from None


def far_label(key):
    """``far_1pct`` -> ``FAR 1 %``; ``eer`` -> ``EER``.

    Example
    -------
    >>> far_label("far_0.1pct"), far_label("eer")
    ('FAR 0.1 %', 'EER')
    """
    if key == "eer":
        return "EER"
    return f"FAR {key[len('far_') : -len('pct')]} %"


def check_thresholds(thresholds):
    """Checks the ``thresholds`` of ``export_pretrained``; the operating
    points in order (``eer`` first).

    ``thresholds`` is ``speechbrain_kd.scoring.operating_points``'s
    dict (``eer``, ``far_1pct``, ... each ``{threshold, far, frr}``) plus
    ``corpus``, ``target_trials`` and ``nontarget_trials`` (and optionally
    ``trial_list``, ``scoring``), as
    ``speechbrain_kd.scoring.published_thresholds`` builds it.

    Example
    -------
    >>> t = {"corpus": "x", "target_trials": 2, "nontarget_trials": 2,
    ...      "eer": {"threshold": 0.5, "far": 0.5, "frr": 0.5}}
    >>> check_thresholds(t)
    ['eer']
    >>> check_thresholds({"corpus": "x", "target_trials": 2})
    Traceback (most recent call last):
    ...
    KeyError: "thresholds lacks ['nontarget_trials', 'eer'] (expected ...)"
    """
    if not isinstance(thresholds, dict):
        raise TypeError(
            f"thresholds must be a dict (operating_points + corpus and "
            f"trial counts), got {type(thresholds).__name__}"
        )
    needed = ("corpus", "target_trials", "nontarget_trials", "eer")
    missing = [k for k in needed if k not in thresholds]
    if missing:
        raise KeyError(
            f"thresholds lacks {missing} (expected corpus, target_trials, "
            "nontarget_trials and operating points eer, far_*pct)"
        )
    fars = [k for k in thresholds if k.startswith("far_")]
    points = ["eer"] + sorted(fars, key=p_far, reverse=True)
    for key in points:
        value = thresholds[key]
        if not _is_point(value):
            raise ValueError(
                f"thresholds[{key!r}]: expected a dict of finite numbers "
                f"{list(RATE_KEYS)}, got {value!r}"
            )
    for key in ("target_trials", "nontarget_trials"):
        if not isinstance(thresholds[key], int) or thresholds[key] < 1:
            raise ValueError(
                f"thresholds[{key!r}]: expected a positive int, got "
                f"{thresholds[key]!r}"
            )
    return points


def _is_point(value):
    return isinstance(value, dict) and all(
        isinstance(value.get(k), (int, float)) and math.isfinite(value[k])
        for k in RATE_KEYS
    )


def check_calibration(calibration):
    """Checks the ``calibration`` of ``export_pretrained`` (``a``, ``b``,
    ``prior`` finite numbers, as ``linear_calibration`` returns).

    Example
    -------
    >>> check_calibration({"a": 10.0, "b": -4.0, "prior": 0.5})
    >>> check_calibration({"a": 10.0})
    Traceback (most recent call last):
    ...
    ValueError: calibration['b']: expected a finite number, got None
    """
    if not isinstance(calibration, dict):
        raise TypeError(
            "calibration must be a dict (a, b, prior, as linear_calibration "
            f"returns), got {type(calibration).__name__}"
        )
    for key in ("a", "b", "prior"):
        value = calibration.get(key)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(
                f"calibration[{key!r}]: expected a finite number, got {value!r}"
            )


def thresholds_yaml(thresholds=None, calibration=None):
    """The ``hyperparams.yaml`` lines of thresholds and calibration.

    Top-level plain mappings ``verification_thresholds`` (``eer``,
    ``far_1pct``, ... the thresholds; ``far`` / ``frr``: the rates at each;
    ``corpus``, ``trials``, ``scoring``, ``accept``) and
    ``score_calibration`` (``a``, ``b``, ``prior``, ``Cllr``, ``minCllr``,
    ``llr``): ``from_hparams`` loads them as dicts, e.g.
    ``model.hparams.verification_thresholds["eer"]``.

    Example
    -------
    >>> t = {"corpus": "x", "target_trials": 2, "nontarget_trials": 3,
    ...      "eer": {"threshold": 0.5, "far": 0.25, "frr": 0.5}}
    >>> print(thresholds_yaml(t).split("verification_thresholds:")[1])
    <BLANKLINE>
      eer: 0.5
      far:
        eer: 0.25
      frr:
        eer: 0.5
      trials:
        target: 2
        nontarget: 3
      corpus: x
      scoring: cosine
      accept: score > threshold
    <BLANKLINE>
    """
    import ruamel.yaml

    text = ""
    yaml = ruamel.yaml.YAML()
    yaml.default_flow_style = False
    if thresholds is not None:
        points = check_thresholds(thresholds)
        tree = {k: float(thresholds[k]["threshold"]) for k in points}
        tree["far"] = {k: float(thresholds[k]["far"]) for k in points}
        tree["frr"] = {k: float(thresholds[k]["frr"]) for k in points}
        tree["trials"] = {
            "target": int(thresholds["target_trials"]),
            "nontarget": int(thresholds["nontarget_trials"]),
        }
        tree["corpus"] = str(thresholds["corpus"])
        if thresholds.get("trial_list"):
            tree["trial_list"] = str(thresholds["trial_list"])
        tree["scoring"] = str(thresholds.get("scoring", "cosine"))
        tree["accept"] = "score > threshold"
        out = io.StringIO()
        yaml.dump({"verification_thresholds": tree}, out)
        text += (
            "\n# Cosine-score thresholds measured on the trials named here "
            "(accept: score >\n# threshold); far / frr: the rates there. "
            "Recalibrate on in-domain trials.\n" + out.getvalue()
        )
    if calibration is not None:
        check_calibration(calibration)
        tree = {
            k: float(calibration[k])
            for k in ("a", "b", "prior", "Cllr", "minCllr")
            if k in calibration
        }
        tree["llr"] = "a * score + b"
        out = io.StringIO()
        yaml.dump({"score_calibration": tree}, out)
        text += (
            "\n# Linear calibration of the cosine score to a natural-log "
            "LLR (same speaker vs\n# not), fitted on the same trials; "
            "Cllr / minCllr in bits.\n" + out.getvalue()
        )
    return text


def thresholds_card(thresholds=None, calibration=None):
    """Markdown lines of the model card on thresholds and calibration.

    Example
    -------
    >>> t = {"corpus": "x", "target_trials": 2, "nontarget_trials": 3,
    ...      "eer": {"threshold": 0.5, "far": 0.25, "frr": 0.5}}
    >>> print("\\n".join(thresholds_card(t)[4:7]))
    | operating point | threshold | false-accept rate (%) | false-reject rate (%) |
    |---|---|---|---|
    | EER | 0.500000 | 25.00 | 50.00 |
    """  # noqa: E501
    if thresholds is None and calibration is None:
        return []
    lines = ["## Same speaker or not", ""]
    if thresholds is not None:
        points = check_thresholds(thresholds)
        n_tar = int(thresholds["target_trials"])
        n_non = int(thresholds["nontarget_trials"])
        source = f"`{thresholds['corpus']}`"
        if thresholds.get("trial_list"):
            source += f" (`{thresholds['trial_list']}`)"
        scoring = thresholds.get("scoring", "cosine")
        lines += [
            f"{scoring.capitalize()}-score thresholds measured on the trials "
            f"this model was scored on: {source}, {n_tar:,} target and "
            f"{n_non:,} non-target trials. A pair is accepted as the same "
            "speaker when its score is **greater than** the threshold "
            "(`score > threshold`, as SpeechBrain's "
            "`SpeakerRecognition.verify_batch`).",
            "",
            "| operating point | threshold | false-accept rate (%) | "
            "false-reject rate (%) |",
            "|---|---|---|---|",
        ]
        for key in points:
            p = thresholds[key]
            lines.append(
                f"| {far_label(key)} | {p['threshold']:.6f} | "
                f"{100 * p['far']:.2f} | {100 * p['frr']:.2f} |"
            )
        lines += [
            "",
            "The EER threshold is where the two rates are closest; the "
            "FAR x % threshold is the smallest one whose false-accept rate "
            "on these trials is at most x %.",
        ]
        rough = [far_label(k) for k in points[1:] if p_far(k) * n_non < 10]
        if rough:
            lines.append(
                f"With {n_non:,} non-target trials, the {', '.join(rough)} "
                "thresholds allow fewer than 10 false accepts: rough."
            )
        lines += [
            "Exact values: `verification_thresholds` in `hyperparams.yaml`.",
            "",
            DRIFT_NOTE,
            "",
            "```python",
            "from speechbrain.inference.speaker import SpeakerRecognition",
            "model = SpeakerRecognition.from_hparams(source=THIS_FOLDER, "
            "savedir='tmp')",
            'threshold = model.hparams.verification_thresholds["eer"]',
            "score, _ = model.verify_files('a.wav', 'b.wav')  # 16 kHz",
            "same_speaker = bool(score > threshold)",
            "```",
            "",
            "(`verify_files` decides at SpeechBrain's default threshold "
            "0.25; `verify_batch(wavs1, wavs2, threshold=threshold)` takes "
            "this one.)",
            "",
        ]
    if calibration is not None:
        check_calibration(calibration)
        figures = ""
        if "Cllr" in calibration and "minCllr" in calibration:
            figures = (
                f" Cllr {calibration['Cllr']:.3f} bits (minCllr "
                f"{calibration['minCllr']:.3f} bits, the best monotonic "
                "map, PAV), on the trials it was fitted on."
            )
        lines += [
            "Calibrated score (optional): `llr = a * score + b` with "
            f"a = {calibration['a']:.6g}, b = {calibration['b']:.6g}, a "
            "natural-log likelihood ratio of same vs different speaker, "
            "fitted by prior-weighted logistic regression (effective prior "
            f"{calibration['prior']:g})." + figures + " For a prior P of "
            "same speaker, accept when `llr > -log(P / (1 - P))`. In "
            "`hyperparams.yaml`: `score_calibration`.",
            "",
        ]
    return lines
