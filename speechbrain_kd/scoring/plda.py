"""PLDA back-end: SpeechBrain's Gaussian PLDA, scored on the trial pairs.

``train_plda`` trains SpeechBrain's ``PLDA_LDA.PLDA`` on labelled
embeddings; ``plda_pair_scores`` scores only the trial pairs, rather than
SpeechBrain's full enrolment x test matrix.
"""

import torch


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
