"""Embedding extraction: one embedding per utterance of a data loader."""

import torch


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
