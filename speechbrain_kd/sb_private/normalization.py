"""``InputNormalization`` internals: the published embedding normalisation.

A published folder holds ``mean_var_norm_emb.ckpt``, the global
normalisation of the embeddings that ``EncoderClassifier`` applies. It is
fitted here by setting the module's statistics (``count``, ``glob_mean``,
``glob_std``) and saved with its private ``_save`` hook; both are listed
in ``speechbrain_kd.sb_private.PRIVATE_API`` and checked by
``tests/test_sb_private.py``.
"""

from speechbrain.processing.features import InputNormalization


def fit_embedding_norm(embeddings=None):
    """A global ``InputNormalization`` fitted on ``[N, dim]`` embeddings.

    The statistics (private attributes) are set directly: the module's own
    update is a collective operation under DDP, and only the main process
    exports. ``None``: an unfitted normalisation (the identity).

    Example
    -------
    >>> import torch
    >>> norm = fit_embedding_norm(torch.tensor([[1.0, 2.0], [3.0, 6.0]]))
    >>> norm.count, norm.glob_mean.tolist(), norm.glob_std.tolist()
    (2, [2.0, 4.0], [1.0, 2.0])
    """
    norm = InputNormalization(norm_type="global", std_norm=False)
    if embeddings is None:
        return norm
    emb = embeddings.reshape(embeddings.shape[0], -1).float().cpu()
    norm.count = emb.shape[0]
    norm.glob_mean = emb.mean(0)
    norm.glob_std = emb.var(0, unbiased=False).clamp(min=norm.epsilon).sqrt()
    return norm


def save_embedding_norm(norm, path):
    """Writes ``norm`` as ``EncoderClassifier`` loads it (its ``_save``)."""
    norm._save(path)
