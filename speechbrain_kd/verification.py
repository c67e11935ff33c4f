"""Speaker-verification scoring: embeddings, cosine scores, EER and minDCF.

``compute_eer`` and ``compute_min_dcf`` give the same values as
``speechbrain.utils.metric_stats.EER`` / ``minDCF`` (same candidate
thresholds: the unique scores and the midpoints between them; a trial is
accepted when its score is above the threshold), but sort the scores once
and count with binary search, so that they run in O(N log N): well under a
second for VoxCeleb1-E/H (~580k trials), where SpeechBrain's ``EER`` loops
over every threshold and ``minDCF`` builds a thresholds x scores matrix.

Back-ends (``score_trials``): cosine; z-, t- and s-norm against a cohort of
training embeddings and adaptive s-norm (``as-norm``: the ``top_k``
closest cohort scores, SpeechBrain's ``s-norm`` with ``cohort_size``), with
the cohort statistics computed once per utterance rather than once per
trial; PLDA (SpeechBrain's ``PLDA_LDA``), scored on the trial pairs only
rather than on SpeechBrain's full enrolment x test matrix. Every trial list
stores each utterance's embedding once (``trial_indices``), so a
VoxCeleb1-E/H list scores in seconds.

Decision thresholds (``operating_points``): the EER threshold and, for a
target false-accept rate, the smallest threshold whose false-accept rate
is at most the target, with the false-reject rate there; a pair is
accepted when ``score > threshold`` (SpeechBrain's
``SpeakerRecognition.verify_batch``). ``detection_metrics`` reports them
with a linear score calibration (``speechbrain_kd.calibration``).
"""

import logging
import math

import torch
import torch.nn.functional as F

from speechbrain_kd.calibration import far_key, linear_calibration
from speechbrain_kd.data import read_trials

logger = logging.getLogger(__name__)


def _as_scores(scores, name):
    scores = torch.as_tensor(scores)
    if not scores.is_floating_point():
        scores = scores.float()
    scores = scores.detach().flatten().cpu()
    if scores.numel() == 0:
        raise ValueError(f"{name} is empty")
    if not torch.isfinite(scores).all():
        raise ValueError(f"{name} holds NaN or infinite scores")
    return scores


def error_rates(positive_scores, negative_scores):
    """Miss and false-alarm rates at every candidate threshold.

    Arguments
    ---------
    positive_scores : torch.Tensor or array
        1-D scores of target trials.
    negative_scores : torch.Tensor or array
        1-D scores of non-target trials.

    Returns
    -------
    thresholds : torch.Tensor
        Sorted candidate thresholds: unique scores and their midpoints.
    p_miss : torch.Tensor
        Fraction of target scores ``<=`` each threshold.
    p_fa : torch.Tensor
        Fraction of non-target scores ``>`` each threshold.

    Example
    -------
    >>> thr, p_miss, p_fa = error_rates([0.6, 0.8], [0.2, 0.7])
    >>> [round(x, 2) for x in thr.tolist()]
    [0.2, 0.4, 0.6, 0.65, 0.7, 0.75, 0.8]
    >>> p_miss.tolist(), p_fa.tolist()
    ([0.0, 0.0, 0.5, 0.5, 0.5, 0.5, 1.0], [0.5, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0])
    """
    pos = _as_scores(positive_scores, "positive_scores")
    neg = _as_scores(negative_scores, "negative_scores")
    dtype = torch.promote_types(pos.dtype, neg.dtype)
    pos, neg = pos.to(dtype), neg.to(dtype)
    thresholds = torch.unique(torch.cat([pos, neg]))  # sorted
    middle = (thresholds[:-1] + thresholds[1:]) / 2
    thresholds, _ = torch.sort(torch.cat([thresholds, middle]))
    pos_sorted, _ = torch.sort(pos)
    neg_sorted, _ = torch.sort(neg)
    n_miss = torch.searchsorted(pos_sorted, thresholds, right=True)
    n_fa = neg.numel() - torch.searchsorted(neg_sorted, thresholds, right=True)
    p_miss = n_miss.float() / pos.numel()
    p_fa = n_fa.float() / neg.numel()
    return thresholds, p_miss, p_fa


def compute_eer(positive_scores, negative_scores):
    """Equal error rate and its threshold, as ``speechbrain``'s ``EER``.

    At the threshold where miss and false-alarm rates are closest (the
    lowest such threshold), returns their mean.

    Arguments
    ---------
    positive_scores : torch.Tensor or array
        1-D scores of target trials.
    negative_scores : torch.Tensor or array
        1-D scores of non-target trials.

    Returns
    -------
    eer : float
        Equal error rate, in [0, 1].
    threshold : float
        The threshold where it is reached.

    Example
    -------
    >>> eer, threshold = compute_eer(torch.tensor([0.6, 0.7, 0.8, 0.5]),
    ...                              torch.tensor([0.4, 0.3, 0.2, 0.1]))
    >>> eer, round(threshold, 2)
    (0.0, 0.4)
    """
    thresholds, p_miss, p_fa = error_rates(positive_scores, negative_scores)
    gap = (p_fa.double() - p_miss.double()).abs()
    i = int(torch.argmin(gap))  # first minimum, as SpeechBrain's loop
    eer = (float(p_fa[i]) + float(p_miss[i])) / 2
    return eer, float(thresholds[i])


def compute_min_dcf(
    positive_scores, negative_scores, p_target=0.01, c_miss=1.0, c_fa=1.0
):
    """Minimum (unnormalised) detection cost, as ``speechbrain``'s ``minDCF``.

    ``C_det = c_miss * p_miss * p_target + c_fa * p_fa * (1 - p_target)``,
    minimised over the candidate thresholds.

    Arguments
    ---------
    positive_scores : torch.Tensor or array
        1-D scores of target trials.
    negative_scores : torch.Tensor or array
        1-D scores of non-target trials.
    p_target : float
        Prior probability of a target trial.
    c_miss : float
        Cost of a miss.
    c_fa : float
        Cost of a false alarm.

    Returns
    -------
    min_dcf : float
        The minimum cost.
    threshold : float
        The threshold where it is reached.

    Example
    -------
    >>> compute_min_dcf(torch.tensor([0.6, 0.7, 0.8, 0.5]),
    ...                 torch.tensor([0.4, 0.3, 0.2, 0.1]))[0]
    0.0
    """
    thresholds, p_miss, p_fa = error_rates(positive_scores, negative_scores)
    c_det = c_miss * p_miss * p_target + c_fa * p_fa * (1 - p_target)
    i = int(torch.argmin(c_det))
    return float(c_det[i]), float(thresholds[i])


FAR_TARGETS = (0.01, 0.001)


def rates_at(positive_scores, negative_scores, threshold):
    """False-accept and false-reject rates at one threshold.

    A trial is accepted when its score is ``> threshold``: FAR is the
    fraction of non-target scores above it, FRR the fraction of target
    scores at or below it (``error_rates``' ``p_fa`` and ``p_miss``).

    Returns
    -------
    dict
        ``threshold``, ``far``, ``frr`` (fractions).

    Example
    -------
    >>> rates_at([0.6, 0.8], [0.2, 0.7], 0.6)
    {'threshold': 0.6, 'far': 0.5, 'frr': 0.5}
    """
    pos = _as_scores(positive_scores, "positive_scores")
    neg = _as_scores(negative_scores, "negative_scores")
    threshold = float(threshold)
    return {
        "threshold": threshold,
        "far": int((neg > threshold).sum()) / neg.numel(),
        "frr": int((pos <= threshold).sum()) / pos.numel(),
    }


def threshold_at_far(positive_scores, negative_scores, far):
    """The smallest threshold whose false-accept rate is at most ``far``.

    With acceptance at ``score > threshold``, it is the (k+1)-th highest
    non-target score, k = floor(far x non-target trials): every non-target
    score above it is a false accept (at most k of them), and any lower
    threshold accepts more than k. It is the threshold of lowest
    false-reject rate among those meeting the target. With fewer than
    1 / far non-target trials, it is the highest non-target score (FAR 0).
    One sort: O(N log N).

    Arguments
    ---------
    positive_scores, negative_scores : torch.Tensor or array
        1-D scores of the target and the non-target trials.
    far : float
        Target false-accept rate, in (0, 1).

    Returns
    -------
    dict
        ``threshold``, ``far`` (measured, <= the target), ``frr``.

    Example
    -------
    >>> neg = [0.1 * i for i in range(10)]  # 0.0 ... 0.9
    >>> p = threshold_at_far([0.75, 0.95], neg, far=0.2)
    >>> round(p["threshold"], 2), p["far"], p["frr"]  # 0.8 and 0.9 pass
    (0.7, 0.2, 0.0)
    >>> p = threshold_at_far([0.75, 0.95], neg, far=0.01)
    >>> round(p["threshold"], 2), p["far"], p["frr"]
    (0.9, 0.0, 0.5)
    """
    far = float(far)
    if not 0.0 < far < 1.0:
        raise ValueError(f"far must be in (0, 1), got {far}")
    pos = _as_scores(positive_scores, "positive_scores")
    neg = _as_scores(negative_scores, "negative_scores")
    dtype = torch.promote_types(pos.dtype, neg.dtype)
    neg_sorted, _ = torch.sort(neg.to(dtype), descending=True)
    # false accepts allowed; the tolerance keeps e.g. 0.01 x 4000 at 40
    k = int(math.floor(far * neg.numel() + 1e-9))
    threshold = float(neg_sorted[min(k, neg.numel() - 1)])
    return rates_at(pos.to(dtype), neg.to(dtype), threshold)


def operating_points(positive_scores, negative_scores, fars=FAR_TARGETS):
    """Thresholds and error rates at the EER point and at target FARs.

    Arguments
    ---------
    positive_scores, negative_scores : torch.Tensor or array
        1-D scores of the target and the non-target trials.
    fars : sequence of float
        Target false-accept rates (default 1 % and 0.1 %).

    Returns
    -------
    dict
        ``eer`` (``compute_eer``'s threshold) and ``far_1pct``,
        ``far_0.1pct``, ... (``threshold_at_far``), each ``{threshold,
        far, frr}``; accept when ``score > threshold``.

    Example
    -------
    >>> pts = operating_points([0.6, 0.7, 0.8, 0.5], [0.4, 0.3, 0.2, 0.1])
    >>> list(pts), round(pts["eer"]["threshold"], 2), pts["eer"]["frr"]
    (['eer', 'far_1pct', 'far_0.1pct'], 0.4, 0.0)
    """
    pos = _as_scores(positive_scores, "positive_scores")
    neg = _as_scores(negative_scores, "negative_scores")
    _, threshold = compute_eer(pos, neg)
    dtype = torch.promote_types(pos.dtype, neg.dtype)
    out = {"eer": rates_at(pos.to(dtype), neg.to(dtype), threshold)}
    for far in fars:
        out[far_key(far)] = threshold_at_far(pos, neg, far)
    return out


@torch.no_grad()
def extract_embeddings(encode, dataloader):
    """Embeds every utterance of ``dataloader``.

    Arguments
    ---------
    encode : callable
        ``encode(wavs, wav_lens) -> [batch, 1, dim]`` (or ``[batch, dim]``).
    dataloader : iterable
        Yields SpeechBrain ``PaddedBatch`` objects with ``id`` and ``sig``.

    Returns
    -------
    dict
        ID -> 1-D embedding (CPU float tensor).
    """
    embeddings = {}
    for batch in dataloader:
        wavs, lens = batch.sig
        emb = encode(wavs, lens).float().cpu()
        emb = emb.reshape(emb.shape[0], -1)
        for utt_id, e in zip(batch.id, emb):
            embeddings[utt_id] = e
    return embeddings


def cosine_scores(embeddings, trials):
    """Cosine similarity of each trial.

    Arguments
    ---------
    embeddings : dict
        ID -> 1-D embedding.
    trials : list of tuple
        ``(label, enrol_id, test_id)`` as ``speechbrain_kd.data.read_trials``
        returns them.

    Returns
    -------
    positive_scores, negative_scores : torch.Tensor
        Scores of the target and the non-target trials.

    Example
    -------
    >>> emb = {"a": torch.tensor([1.0, 0.0]), "b": torch.tensor([1.0, 1.0]),
    ...        "c": torch.tensor([0.0, 1.0])}
    >>> pos, neg = cosine_scores(emb, [(1, "a", "b"), (0, "a", "c")])
    >>> round(float(pos[0]), 4), float(neg[0])
    (0.7071, 0.0)
    """
    missing = sorted(
        {i for _, e, t in trials for i in (e, t) if i not in embeddings}
    )
    if missing:
        raise KeyError(
            f"{len(missing)} trial entries have no embedding (not in the test "
            f"manifest?), e.g. {missing[:3]}"
        )
    enrol = torch.stack([embeddings[e] for _, e, _ in trials])
    test = torch.stack([embeddings[t] for _, _, t in trials])
    scores = F.cosine_similarity(enrol, test, dim=-1, eps=1e-6)
    labels = torch.tensor([lab for lab, _, _ in trials], dtype=torch.bool)
    return scores[labels], scores[~labels]


SCORING_METHODS = ("cosine", "z-norm", "t-norm", "s-norm", "as-norm", "plda")


def trial_indices(embeddings, trials):
    """The embeddings a trial list uses, stacked once, and each side's index.

    Every utterance is stored once however many trials it is in, so that a
    VoxCeleb1-E/H list (~580k trials over ~145k utterances) never copies an
    embedding per trial.

    Arguments
    ---------
    embeddings : dict
        ID -> 1-D embedding.
    trials : list of tuple
        ``(label, enrol_id, test_id)`` as ``speechbrain_kd.data.read_trials``
        returns them.

    Returns
    -------
    matrix : torch.Tensor
        ``[utterances, dim]`` float embeddings, in first-use order.
    enrol_idx, test_idx : torch.Tensor
        ``[trials]`` row of each trial's enrolment / test utterance.
    labels : torch.Tensor
        ``[trials]`` bool, True for target trials.

    Example
    -------
    >>> import torch
    >>> emb = {"a": torch.ones(2), "b": torch.zeros(2)}
    >>> m, e, t, lab = trial_indices(emb, [(1, "a", "b"), (0, "b", "a")])
    >>> m.shape, e.tolist(), t.tolist(), lab.tolist()
    (torch.Size([2, 2]), [0, 1], [1, 0], [True, False])
    """
    missing = sorted(
        {i for _, e, t in trials for i in (e, t) if i not in embeddings}
    )
    if missing:
        raise KeyError(
            f"{len(missing)} trial entries have no embedding (not in the test "
            f"manifest?), e.g. {missing[:3]}"
        )
    index = {}
    for _, e, t in trials:
        for utt in (e, t):
            if utt not in index:
                index[utt] = len(index)
    matrix = torch.stack([embeddings[u] for u in index]).float()
    enrol_idx = torch.tensor([index[e] for _, e, _ in trials])
    test_idx = torch.tensor([index[t] for _, _, t in trials])
    labels = torch.tensor([lab for lab, _, _ in trials], dtype=torch.bool)
    return matrix, enrol_idx, test_idx, labels


def pair_cosine(matrix, enrol_idx, test_idx, chunk_size=65536):
    """Cosine similarity of row pairs, in chunks (bounded memory).

    Same values as ``cosine_scores`` (``F.cosine_similarity``, eps 1e-6).

    Example
    -------
    >>> import torch
    >>> m = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    >>> pair_cosine(m, torch.tensor([0, 0]), torch.tensor([1, 2])).tolist()
    [0.7071067690849304, 0.0]
    """
    out = torch.empty(enrol_idx.numel(), dtype=matrix.dtype)
    for s in range(0, enrol_idx.numel(), chunk_size):
        e = matrix[enrol_idx[s : s + chunk_size]]
        t = matrix[test_idx[s : s + chunk_size]]
        out[s : s + chunk_size] = F.cosine_similarity(e, t, dim=-1, eps=1e-6)
    return out


def cohort_stats(matrix, cohort, top_k=None, max_elements=2**24):
    """Mean and standard deviation of each row's scores against a cohort.

    The statistics of score normalisation: each embedding is cosine-scored
    against every cohort embedding (impostors: training utterances), and
    the mean and (unbiased) standard deviation of those scores, or of the
    ``top_k`` highest ones (adaptive normalisation), are returned. As
    SpeechBrain's ``speaker_verification_cosine.py`` (its ``cohort_size``
    is ``top_k``), but computed once per utterance, not once per trial, in
    chunks of at most ``max_elements`` scores.

    Arguments
    ---------
    matrix : torch.Tensor
        ``[N, dim]`` embeddings to normalise.
    cohort : torch.Tensor
        ``[C, dim]`` cohort embeddings.
    top_k : int, optional
        Keep the ``top_k`` highest cohort scores of each row (all if None).
    max_elements : int
        Largest number of scores held at once.

    Returns
    -------
    mean, std : torch.Tensor
        ``[N]`` each.

    Example
    -------
    >>> import torch
    >>> m = torch.tensor([[1.0, 0.0]])
    >>> c = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> mean, std = cohort_stats(m, c)
    >>> round(float(mean), 4), round(float(std), 4)
    (0.0, 1.0)
    >>> mean, std = cohort_stats(m, c, top_k=2)
    >>> round(float(mean), 4), round(float(std), 4)
    (0.5, 0.7071)
    """
    if cohort.dim() != 2 or cohort.shape[0] < 2:
        raise ValueError(
            f"The cohort needs at least 2 embeddings, got {tuple(cohort.shape)}"
        )
    if cohort.shape[1] != matrix.shape[1]:
        raise ValueError(
            f"Cohort embeddings have {cohort.shape[1]} dimensions, the scored "
            f"ones {matrix.shape[1]}"
        )
    k = cohort.shape[0] if top_k is None else int(top_k)
    if not 2 <= k <= cohort.shape[0]:
        raise ValueError(
            f"top_k must be in [2, cohort size {cohort.shape[0]}], got {top_k}"
        )
    c = F.normalize(cohort.float(), dim=-1, eps=1e-6)
    rows = max(1, max_elements // c.shape[0])
    means, stds = [], []
    for s in range(0, matrix.shape[0], rows):
        m = F.normalize(matrix[s : s + rows].float(), dim=-1, eps=1e-6)
        scores = m @ c.T
        if k < c.shape[0]:
            scores = torch.topk(scores, k, dim=1).values
        means.append(scores.mean(dim=1))
        stds.append(scores.std(dim=1))
    return torch.cat(means), torch.cat(stds)


def normalize_scores(scores, enrol_idx, test_idx, mean, std, method="s-norm"):
    """Z-, T- or S-normalised trial scores from per-utterance statistics.

    ``z-norm`` uses the enrolment side's cohort statistics, ``t-norm`` the
    test side's, ``s-norm`` the mean of both (SpeechBrain's definitions).

    Arguments
    ---------
    scores : torch.Tensor
        ``[trials]`` raw scores.
    enrol_idx, test_idx : torch.Tensor
        ``[trials]`` indices into ``mean`` / ``std``.
    mean, std : torch.Tensor
        Per-utterance cohort statistics (``cohort_stats``).
    method : str
        ``z-norm``, ``t-norm`` or ``s-norm``.

    Example
    -------
    >>> import torch
    >>> normalize_scores(torch.tensor([0.5]), torch.tensor([0]),
    ...                  torch.tensor([1]), torch.tensor([0.1, 0.3]),
    ...                  torch.tensor([0.2, 0.2]), "s-norm").tolist()
    [1.5]
    """
    std = std.clamp_min(1e-8)  # a degenerate cohort must not give inf
    z = (scores - mean[enrol_idx]) / std[enrol_idx]
    if method == "z-norm":
        return z
    t = (scores - mean[test_idx]) / std[test_idx]
    if method == "t-norm":
        return t
    if method == "s-norm":
        return 0.5 * (z + t)
    raise ValueError(
        f"method must be 'z-norm', 't-norm' or 's-norm', got {method!r}"
    )


def train_plda(
    embeddings, speakers, rank_f=100, nb_iter=10, scaling_factor=1.0
):
    """Trains SpeechBrain's Gaussian PLDA on labelled embeddings.

    Arguments
    ---------
    embeddings : torch.Tensor
        ``[N, dim]`` training embeddings (e.g. x-vectors).
    speakers : sequence of str
        ``N`` speaker labels (several utterances per speaker).
    rank_f : int
        Rank of the speaker subspace (capped at ``dim``).
    nb_iter : int
        EM iterations.
    scaling_factor : float
        Scaling of the statistics during training (SpeechBrain's recipe
        uses 0.05).

    Returns
    -------
    speechbrain.processing.PLDA_LDA.PLDA
        The trained model (``mean``, ``F``, ``Sigma``).
    """
    import numpy
    from speechbrain.processing.PLDA_LDA import PLDA, StatObject_SB

    emb = torch.as_tensor(embeddings).detach().double().cpu().numpy()
    speakers = list(speakers)
    if emb.ndim != 2 or emb.shape[0] != len(speakers):
        raise ValueError(
            f"PLDA needs [N, dim] embeddings and N speaker labels, got "
            f"{tuple(emb.shape)} and {len(speakers)} labels"
        )
    if len(set(speakers)) < 2 or len(set(speakers)) == len(speakers):
        raise ValueError(
            "PLDA needs at least 2 speakers and several utterances per "
            f"speaker; got {len(speakers)} utterances of "
            f"{len(set(speakers))} speakers"
        )
    n = emb.shape[0]
    if n <= emb.shape[1]:
        raise ValueError(
            f"PLDA needs more training embeddings than dimensions (its "
            f"covariance must be invertible); got {n} of dimension "
            f"{emb.shape[1]}"
        )
    none = numpy.array([None] * n)
    stat = StatObject_SB(
        modelset=numpy.array(speakers, dtype="|O"),
        segset=numpy.array([f"u{i}" for i in range(n)], dtype="|O"),
        start=none,
        stop=none,
        stat0=numpy.ones((n, 1)),
        stat1=emb,
    )
    plda = PLDA(
        rank_f=min(int(rank_f), emb.shape[1]),
        nb_iter=nb_iter,
        scaling_factor=scaling_factor,
    )
    plda.plda(stat)
    if not all(numpy.isfinite(x).all() for x in (plda.F, plda.Sigma)):
        raise ValueError(
            f"PLDA training on {n} embeddings of {len(set(speakers))} "
            "speakers did not converge (singular covariance?): give more "
            "training embeddings or a smaller rank_f"
        )
    return plda


def plda_pair_scores(
    plda, matrix, enrol_idx, test_idx, scaling_factor=1.0, chunk_size=65536
):
    """PLDA log-likelihood ratios of the given pairs only.

    The same algebra as SpeechBrain's ``fast_PLDA_scoring`` (which scores
    every enrolment model against every test segment: a ~145k x 145k
    matrix for VoxCeleb1-E), restricted to the trials.

    Arguments
    ---------
    plda : speechbrain.processing.PLDA_LDA.PLDA
        Trained model (``mean``, ``F``, ``Sigma``).
    matrix : torch.Tensor
        ``[utterances, dim]`` embeddings.
    enrol_idx, test_idx : torch.Tensor
        ``[trials]`` rows of each side.
    scaling_factor : float
        As ``fast_PLDA_scoring``'s (1 in SpeechBrain's recipe).
    chunk_size : int
        Trials scored at once.

    Returns
    -------
    torch.Tensor
        ``[trials]`` float64 scores.
    """
    import numpy
    from scipy import linalg

    mu, f_mat, sigma = plda.mean, plda.F, plda.Sigma
    x = torch.as_tensor(matrix).double().cpu().numpy() - mu
    inv_sigma = linalg.inv(sigma)
    eye = numpy.eye(f_mat.shape[1])
    k = f_mat.T.dot(inv_sigma * scaling_factor).dot(f_mat)
    alpha1 = numpy.linalg.slogdet(linalg.inv(k + eye))[1]
    alpha2 = numpy.linalg.slogdet(linalg.inv(2 * k + eye))[1]
    cst = alpha2 / 2.0 - alpha1
    sigma_ac = f_mat.dot(f_mat.T)
    sigma_tot = sigma_ac + sigma
    sigma_tot_inv = linalg.inv(sigma_tot)
    tmp = linalg.inv(sigma_tot - sigma_ac.dot(sigma_tot_inv).dot(sigma_ac))
    phi = sigma_tot_inv - tmp
    psi = sigma_tot_inv.dot(sigma_ac).dot(tmp)
    self_part = 0.5 * numpy.einsum("ij,ij->i", x.dot(phi), x)
    x_psi = x.dot(psi)
    e_all = enrol_idx.numpy()
    t_all = test_idx.numpy()
    out = numpy.empty(e_all.shape[0])
    for s in range(0, e_all.shape[0], chunk_size):
        e, t = e_all[s : s + chunk_size], t_all[s : s + chunk_size]
        cross = numpy.einsum("ij,ij->i", x_psi[e], x[t])
        out[s : s + chunk_size] = (
            self_part[e] + self_part[t] + cst + cross
        ) * scaling_factor
    return torch.from_numpy(out)


def score_trials(
    embeddings, trials, method="cosine", cohort=None, top_k=None, plda=None
):
    """Scores a trial list with one back-end.

    Arguments
    ---------
    embeddings : dict
        ID -> 1-D embedding.
    trials : list of tuple
        ``(label, enrol_id, test_id)``.
    method : str
        ``cosine``; ``z-norm``, ``t-norm``, ``s-norm`` (cosine normalised
        with the statistics of the whole ``cohort``); ``as-norm``
        (adaptive s-norm: the ``top_k`` cohort scores closest to each side;
        SpeechBrain's ``s-norm`` with ``cohort_size: top_k``); ``plda``.
    cohort : torch.Tensor, optional
        ``[C, dim]`` impostor embeddings (training utterances), for the
        normalisations.
    top_k : int, optional
        Cohort size of ``as-norm``.
    plda : speechbrain.processing.PLDA_LDA.PLDA, optional
        Trained model (``train_plda``), for ``plda``.

    Returns
    -------
    scores : torch.Tensor
        ``[trials]`` scores, in trial-list order.
    labels : torch.Tensor
        ``[trials]`` bool, True for target trials.

    Example
    -------
    >>> import torch
    >>> emb = {"a": torch.tensor([1.0, 0.0]), "b": torch.tensor([1.0, 0.2]),
    ...        "c": torch.tensor([0.0, 1.0])}
    >>> cohort = torch.randn(10, 2)
    >>> s, lab = score_trials(emb, [(1, "a", "b"), (0, "a", "c")],
    ...                       "as-norm", cohort=cohort, top_k=5)
    >>> bool(s[0] > s[1]), lab.tolist()
    (True, [True, False])
    """
    if method not in SCORING_METHODS:
        raise ValueError(
            f"Unknown scoring method {method!r}; expected one of "
            f"{list(SCORING_METHODS)}"
        )
    matrix, e_idx, t_idx, labels = trial_indices(embeddings, trials)
    if method == "plda":
        if plda is None:
            raise ValueError("Scoring method 'plda' needs a trained plda")
        return plda_pair_scores(plda, matrix, e_idx, t_idx), labels
    scores = pair_cosine(matrix, e_idx, t_idx)
    if method == "cosine":
        return scores, labels
    if cohort is None:
        raise ValueError(f"Scoring method {method!r} needs a cohort")
    if method == "as-norm":
        if top_k is None:
            raise ValueError("Scoring method 'as-norm' needs top_k")
        mean, std = cohort_stats(matrix, cohort, top_k=top_k)
        method = "s-norm"
    else:
        mean, std = cohort_stats(matrix, cohort)
    return normalize_scores(scores, e_idx, t_idx, mean, std, method), labels


def detection_metrics(positive_scores, negative_scores, p_target=0.01):
    """EER (percent), minDCF (raw and normalised), trial counts, decision
    thresholds and a linear calibration.

    Returns
    -------
    dict
        ``EER`` (percent), ``minDCF``, ``minDCF_norm``, ``target_trials``,
        ``nontarget_trials``; ``thresholds``: ``operating_points`` (EER,
        FAR 1 %, FAR 0.1 %); ``calibration``:
        ``speechbrain_kd.calibration.linear_calibration`` (``a``, ``b``,
        ``prior`` 0.5, ``Cllr``, ``minCllr``).

    Example
    -------
    >>> m = detection_metrics([0.9, 0.8], [0.1, 0.85])
    >>> m["EER"], m["target_trials"], m["nontarget_trials"]
    (50.0, 2, 2)
    >>> m["thresholds"]["far_1pct"]["threshold"], m["calibration"]["prior"]
    (0.8500000238418579, 0.5)
    """
    pos = _as_scores(positive_scores, "positive_scores")
    neg = _as_scores(negative_scores, "negative_scores")
    eer, _ = compute_eer(pos, neg)
    min_dcf, _ = compute_min_dcf(pos, neg, p_target=p_target)
    return {
        "EER": 100 * eer,
        "minDCF": min_dcf,
        "minDCF_norm": min_dcf / min(p_target, 1 - p_target),
        "target_trials": int(pos.numel()),
        "nontarget_trials": int(neg.numel()),
        "thresholds": operating_points(pos, neg),
        "calibration": linear_calibration(pos.double(), neg.double()),
    }


def published_thresholds(result, trial_file=None, scoring="cosine"):
    """The ``thresholds`` and ``calibration`` to publish from a result of
    ``speechbrain_kd.recipe.verify``.

    Taken from the ``scoring`` back-end (cosine: the score
    ``SpeakerRecognition`` computes) of the result's main trial list.

    Arguments
    ---------
    result : dict
        ``verify``'s result (``trial_list``, ``by_list``).
    trial_file : str, optional
        The list's file; its base name is recorded as ``trial_list``.
    scoring : str
        The back-end whose scores the thresholds apply to.

    Returns
    -------
    thresholds, calibration : dict or None
        The arguments of ``speechbrain_kd.export.export_pretrained`` (None,
        None when the list was not scored with ``scoring``).

    Example
    -------
    >>> fig = detection_metrics([0.9, 0.8], [0.1, 0.85])
    >>> res = {"trial_list": "trials", "by_list": {"trials": {"cosine": fig}}}
    >>> t, c = published_thresholds(res, "/data/veri_test2.txt")
    >>> t["corpus"], t["trial_list"], t["target_trials"], sorted(c)[:2]
    ('trials', 'veri_test2.txt', 2, ['Cllr', 'a'])
    """
    import os

    name = result["trial_list"]
    figures = result.get("by_list", {}).get(name, {}).get(scoring)
    if figures is None or "thresholds" not in figures:
        logger.warning(
            "Trial list %s has no %s scores with thresholds: the published "
            "folder records none",
            name,
            scoring,
        )
        return None, None
    thresholds = dict(figures["thresholds"])
    thresholds.update(
        corpus=name,
        target_trials=figures["target_trials"],
        nontarget_trials=figures["nontarget_trials"],
        scoring=scoring,
    )
    if trial_file:
        thresholds["trial_list"] = os.path.basename(str(trial_file))
    return thresholds, figures.get("calibration")


def write_scores(path, trials, scores):
    """Writes ``enrol test label score`` lines, as SpeechBrain's scores.txt."""
    from speechbrain_kd.fileio import atomic_write_text

    atomic_write_text(
        path,
        "".join(
            f"{e} {t} {lab} {s:.6f}\n"
            for (lab, e, t), s in zip(trials, scores.tolist())
        ),
    )


def evaluate_trials(
    embeddings,
    trials_path,
    p_target=0.01,
    method="cosine",
    cohort=None,
    top_k=None,
    plda=None,
    scores_file=None,
):
    """Scores a VoxCeleb-format trial list; EER and minDCF.

    Arguments
    ---------
    embeddings : dict
        ID -> 1-D embedding.
    trials_path : str
        The trial list (``label enrol test`` lines).
    p_target : float
        Prior of the detection cost.
    method, cohort, top_k, plda
        The back-end, as ``score_trials`` (cosine by default).
    scores_file : str, optional
        Where to write the per-trial scores.

    Returns
    -------
    dict
        ``EER`` in percent, ``minDCF`` (unnormalised, as SpeechBrain's),
        ``minDCF_norm`` (divided by ``min(p_target, 1 - p_target)``, the
        cost of the best trivial system, as in NIST SRE and most papers),
        and the trial counts.
    """
    trials = read_trials(trials_path)
    scores, labels = score_trials(
        embeddings, trials, method, cohort=cohort, top_k=top_k, plda=plda
    )
    if labels.all() or not labels.any():
        raise ValueError(
            f"{trials_path} needs both target (1) and non-target (0) trials"
        )
    if scores_file is not None:
        write_scores(scores_file, trials, scores)
    return detection_metrics(scores[labels], scores[~labels], p_target)
