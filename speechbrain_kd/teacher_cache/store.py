"""Reading and writing teacher cache folders (TeacherCache, CacheWriter).

The layout is in ``speechbrain_kd.teacher_cache.format``. ``CacheWriter``
writes into ``<folder>.partial`` and marks each view done only after its
data is on disk, so that an interrupted build (even ``kill -9``) continues
where it stopped; ``finish`` renames the complete cache into place.
"""

import json
import logging
import os
import shutil

import numpy
import torch

from speechbrain_kd.teacher_cache.format import (
    FORMAT,
    read_meta,
    rebuild_logits,
    split_top,
)

logger = logging.getLogger(__name__)


class TeacherCache:
    """Reads a complete teacher cache (layout: ``format``).

    Arguments
    ---------
    folder : str
        The cache folder (complete: ``meta.json`` and the arrays).

    Example
    -------
    >>> folder = getfixture("tmpdir") / "cache"
    >>> meta = dict(key={"k": 1}, segments=2, views=1, classes=3,
    ...             embedding_dim=2, topk=None, T=4.0)
    >>> writer = CacheWriter(str(folder), meta)
    >>> writer.write([0, 1], [0, 0], torch.tensor([[1.0, 2, 3], [3, 2, 1]]),
    ...              torch.zeros(2, 2), torch.tensor([0, 0]))
    >>> writer.finish()
    >>> cache = TeacherCache(str(folder))
    >>> cache.read(torch.tensor([1]), torch.tensor([0]))["logits"].tolist()
    [[3.0, 2.0, 1.0]]
    """

    def __init__(self, folder):
        self.folder = str(folder)
        with open(os.path.join(self.folder, "meta.json")) as f:
            self.meta = json.load(f)
        self.topk = self.meta["topk"]
        self.T = self.meta["T"]
        self.classes = int(self.meta["classes"])
        mode = "r"
        self.embedding = numpy.load(self._path("embedding"), mmap_mode=mode)
        if self.topk:
            self.top_index = numpy.load(self._path("top_index"), mmap_mode=mode)
            self.top_logits = numpy.load(
                self._path("top_logits"), mmap_mode=mode
            )
            self.tail_lse = numpy.load(self._path("tail_lse"), mmap_mode=mode)
        else:
            self.logits = numpy.load(self._path("logits"), mmap_mode=mode)

    def _path(self, name):
        return os.path.join(self.folder, f"{name}.npy")

    def read(self, indices, views, device="cpu"):
        """The teacher outputs of views ``views`` of segments ``indices``.

        Arguments
        ---------
        indices, views : torch.Tensor
            ``[batch]`` segment rows (``cache_index``) and views.
        device : str or torch.device
            Where the tensors go.

        Returns
        -------
        dict
            ``logits`` ``[batch, classes]`` and ``embedding``
            ``[batch, dim]``, float32.
        """
        rows = numpy.asarray(indices.reshape(-1).cpu(), dtype=numpy.int64)
        cols = numpy.asarray(views.reshape(-1).cpu(), dtype=numpy.int64)
        emb = torch.from_numpy(numpy.asarray(self.embedding[rows, cols]))
        if self.topk:
            index = torch.from_numpy(
                numpy.asarray(self.top_index[rows, cols], dtype=numpy.int64)
            )
            top = torch.from_numpy(numpy.asarray(self.top_logits[rows, cols]))
            lse = torch.from_numpy(numpy.asarray(self.tail_lse[rows, cols]))
            logits = rebuild_logits(
                index.to(device),
                top.to(device).float(),
                lse.to(device).float(),
                self.classes,
                self.T,
            )
        else:
            logits = torch.from_numpy(numpy.asarray(self.logits[rows, cols]))
            logits = logits.to(device).float()
        return {"logits": logits, "embedding": emb.to(device).float()}


class CacheWriter:
    """Writes a teacher cache into ``<folder>.partial``, resumably.

    Arguments
    ---------
    folder : str
        The final cache folder.
    meta : dict
        ``key`` (what the cache is valid for), ``segments`` (N),
        ``views`` (V), ``classes`` (C), ``embedding_dim`` (D), ``topk``
        (None: full logits) and ``T``.
    """

    def __init__(self, folder, meta):
        self.folder = str(folder)
        self.partial = self.folder + ".partial"
        self.meta = dict(meta, format=FORMAT)
        existing = read_meta(self.partial)
        if existing != self.meta and os.path.exists(self.partial):
            logger.warning(
                "Discarding the partial teacher cache %s (built for other "
                "settings)",
                self.partial,
            )
            shutil.rmtree(self.partial)
        os.makedirs(self.partial, exist_ok=True)
        if existing != self.meta:  # first: the arrays are made after it
            with open(os.path.join(self.partial, "meta.json"), "w") as f:
                json.dump(self.meta, f, indent=1, sort_keys=True)
        try:
            self._open_arrays()
        except (OSError, ValueError):  # killed while creating an array
            logger.warning("Restarting the damaged build %s", self.partial)
            shutil.rmtree(self.partial)
            self.__init__(folder, meta)

    def _open_arrays(self):
        meta = self.meta
        n, v = meta["segments"], meta["views"]
        c, d, k = meta["classes"], meta["embedding_dim"], meta["topk"]
        self.arrays = {"embedding": self._array("embedding", (n, v, d))}
        if k:
            self.arrays["top_index"] = self._array(
                "top_index", (n, v, k + 1), numpy.int32
            )
            self.arrays["top_logits"] = self._array("top_logits", (n, v, k + 1))
            self.arrays["tail_lse"] = self._array(
                "tail_lse", (n, v), numpy.float32
            )
        else:
            self.arrays["logits"] = self._array("logits", (n, v, c))
        self.done = self._array("done", (n, v), numpy.uint8)

    def _array(self, name, shape, dtype=None):
        dtype = dtype or numpy.dtype(self.meta.get("dtype") or "float16")
        path = os.path.join(self.partial, f"{name}.npy")
        if os.path.exists(path):
            return numpy.load(path, mmap_mode="r+")
        return numpy.lib.format.open_memmap(
            path, mode="w+", dtype=dtype, shape=shape
        )

    def pending(self):
        """``(segment, view)`` pairs not written yet, in order."""
        rows, cols = numpy.nonzero(self.done == 0)
        return list(zip(rows.tolist(), cols.tolist()))

    def write(self, rows, views, logits, embedding, targets):
        """Stores a batch of teacher outputs, then marks it done."""
        rows, views = numpy.asarray(rows), numpy.asarray(views)
        logits = logits.detach().float()
        self.arrays["embedding"][rows, views] = (
            embedding.detach().float().cpu().numpy()
        )
        k = self.meta["topk"]
        if k:
            index, values, lse = split_top(
                logits, targets.to(logits.device), k, self.meta["T"]
            )
            self.arrays["top_index"][rows, views] = index.cpu().numpy()
            self.arrays["top_logits"][rows, views] = values.cpu().numpy()
            self.arrays["tail_lse"][rows, views] = lse.cpu().numpy()
        else:
            self.arrays["logits"][rows, views] = logits.cpu().numpy()
        for array in self.arrays.values():
            array.flush()
        self.done[rows, views] = 1  # after the data is on disk
        self.done.flush()

    def finish(self):
        """Renames the complete cache into place (atomically)."""
        if not self.done.all():
            raise RuntimeError(f"{self.partial}: the cache is not complete")
        for array in (*self.arrays.values(), self.done):
            array.flush()
        self.arrays, self.done = {}, None
        if os.path.exists(self.folder):
            old = self.folder + ".old"
            shutil.rmtree(old, ignore_errors=True)
            os.rename(self.folder, old)
            os.rename(self.partial, self.folder)
            shutil.rmtree(old)
        else:
            os.rename(self.partial, self.folder)
