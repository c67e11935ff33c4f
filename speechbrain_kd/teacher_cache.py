"""Teacher outputs stored once per training view: distillation without
running the teacher.

For V views of every training segment (``speechbrain_kd.data.views``) the
teacher runs once and its logits and utterance embedding are stored;
training then reads them for the view it draws, with no teacher forward
pass and no teacher on the device (as FKD / ReLabel do for images).

Storage (a folder of NumPy ``.npy`` files, memory-mapped, no pickle):

- ``logits.npy`` ``[N, V, C]`` float16: every logit (``topk`` null, and
  by default when C <= 2048);
- or, with ``topk: K``: ``top_index.npy`` ``[N, V, K+1]`` int32 and
  ``top_logits.npy`` float16 (the K largest logits and the target's,
  which the K largest may not hold: the target's is last), and
  ``tail_lse.npy`` ``[N, V]`` float32, the log-sum-exp of the other
  logits divided by the distillation temperature ``T``. ``logits``
  rebuilds full rows with every tail logit at ``T * (tail_lse -
  log(#tail))``: the top classes and the tail's total probability at
  ``T`` are exact, only the distribution inside the tail is flattened
  (``tail_bound`` gives the resulting bound on KD);
- ``embedding.npy`` ``[N, V, D]`` float16;
- ``done.npy`` ``[N, V]`` uint8 (views written so far) and
  ``meta.json`` (what the cache is valid for).

The cache is built in ``<folder>.partial`` and renamed to ``<folder>``
when complete; an interrupted build (even ``kill -9``) continues where it
stopped when the same command runs again. A cache is keyed by the teacher's
weights (a hash of its checkpoint files), the training manifest, the view
settings and the storage settings: one that does not match is refused
with an error naming what differs (``rebuild: True`` replaces it).

Frame-level teacher taps (``teacher_taps``) are not cached (they would
take ~100x the space); a cached run that asks for them is an error.
"""

import hashlib
import json
import logging
import math
import os
import shutil
import time

import numpy
import torch
from tqdm import tqdm

logger = logging.getLogger(__name__)

FULL_LOGITS_MAX_CLASSES = 2048
FORMAT = 1


def file_digest(paths):
    """SHA-256 of the contents of ``paths`` (in the given order)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def teacher_digest(source):
    """A hash of a teacher folder's weights (its ``*.ckpt`` files)."""
    files = sorted(
        os.path.join(source, f)
        for f in os.listdir(source)
        if f.endswith(".ckpt")
    )
    if not files:
        raise FileNotFoundError(
            f"{source}: no *.ckpt files to key the teacher cache on (the "
            "teacher must be a local pretrained folder)"
        )
    return file_digest(files)


def tail_bound(tail_mass, num_tail, student_log_probs_range, T):
    """Bound on |KD(cached) - KD(exact)| from a flattened tail.

    With the tail's probability m exact and spread evenly over its n
    classes, KL(teacher || student) * T^2 moves by at most
    ``T^2 * m * (log n + R)``, R the range of the student's
    log-probabilities (at T) over the tail classes: the entropy of the
    tail changes by at most m log n, the cross-entropy by at most m R.

    Example
    -------
    >>> round(tail_bound(0.01, 100, 2.0, 4.0), 4)
    1.0568
    """
    entropy = math.log(max(num_tail, 1))
    return T**2 * tail_mass * (entropy + student_log_probs_range)


class TeacherCache:
    """Reads a complete teacher cache (see the module docstring).

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


def rebuild_logits(index, top_logits, tail_lse, classes, T):
    """Full logit rows from top-k storage (see the module docstring).

    Every class outside ``index`` gets ``T * (tail_lse - log(#tail))``,
    so that the tail's log-sum-exp at temperature ``T`` is ``tail_lse``.

    Example
    -------
    >>> t = torch.tensor([[4.0, 1.0, 0.0, -1.0]])
    >>> index, top, lse = split_top(t, torch.tensor([0]), k=1, T=2.0)
    >>> full = rebuild_logits(index, top, lse, 4, T=2.0)
    >>> bool(torch.isclose((full / 2).logsumexp(-1), (t / 2).logsumexp(-1)))
    True
    """
    batch = index.shape[0]
    kept = torch.zeros(batch, classes, dtype=torch.bool, device=index.device)
    kept.scatter_(1, index, True)
    num_tail = (classes - kept.sum(-1)).clamp_min(1).to(tail_lse.dtype)
    fill = T * (tail_lse - num_tail.log())
    full = fill.unsqueeze(1).expand(batch, classes).clone()
    return full.scatter(1, index, top_logits)


def split_top(logits, targets, k, T):
    """Top-k storage of logit rows: ``(index, values, tail_lse)``.

    ``index`` / ``values`` ``[batch, k+1]``: the k largest logits, then the
    target's (repeated if already among them, else the (k+1)-th entry is
    the target); ``tail_lse`` ``[batch]``: the log-sum-exp of the other
    logits divided by ``T`` (``-inf`` when there are none).

    Example
    -------
    >>> index, _, _ = split_top(torch.tensor([[0.0, 3, 1, 2]]),
    ...                         torch.tensor([0]), k=2, T=1.0)
    >>> index.tolist()
    [[1, 3, 0]]
    """
    top = logits.topk(k, dim=-1).indices
    index = torch.cat([top, targets.view(-1, 1)], dim=1)
    values = logits.gather(1, index)
    kept = torch.zeros_like(logits, dtype=torch.bool).scatter(1, index, True)
    tail = torch.where(kept, torch.full_like(logits, -math.inf), logits / T)
    return index, values, tail.logsumexp(-1)


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
        existing = _read_meta(self.partial)
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


def _read_meta(folder):
    try:
        with open(os.path.join(folder, "meta.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def check_meta(folder, meta):
    """Error naming the first setting where a complete cache differs."""
    found = _read_meta(folder)
    want = dict(meta, format=FORMAT)
    if found == want:
        return
    if found is None:
        raise ValueError(f"{folder}: not a teacher cache (no meta.json)")
    diffs = []
    for name in sorted(set(found) | set(want)):
        a, b = found.get(name), want.get(name)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += [
                f"{name}.{key}"
                for key in sorted(set(a) | set(b))
                if a.get(key) != b.get(key)
            ]
        elif a != b:
            diffs.append(name)
    raise ValueError(
        f"The teacher cache {folder} was built for other settings "
        f"({', '.join(diffs)} differ: another teacher, manifest or view "
        "settings); remove it, give another teacher_cache folder, or set "
        "teacher_cache: {rebuild: True}"
    )


def build_cache(
    folder,
    meta,
    teacher,
    segments,
    load_view,
    batch_size=32,
    progressbar=True,
):
    """Runs ``teacher`` on every pending view and stores its outputs.

    Arguments
    ---------
    folder : str
        The cache folder (built in ``<folder>.partial``).
    meta : dict
        See ``CacheWriter``.
    teacher : callable
        ``teacher(wavs, lens)`` -> ``{"logits", "embedding"}`` (e.g.
        ``speechbrain_kd.teachers.FrozenTeacher``).
    segments : list of (str, int)
        ``(ID, class index)`` of each training segment, in manifest order.
    load_view : callable
        ``load_view(segment_row, view)`` -> ``[samples]`` waveform.
    batch_size : int
        Views per teacher forward pass.
    progressbar : bool
        Show a tqdm bar (views/s, time left); otherwise the log has the
        start and the end.
    """
    writer = CacheWriter(folder, meta)
    todo = writer.pending()
    total = meta["segments"] * meta["views"]
    start = time.time()
    logger.info(
        "Teacher cache %s: %d of %d views to compute",
        folder,
        len(todo),
        total,
    )
    device = next(iter(teacher.parameters())).device
    bar = tqdm(
        total=len(todo),
        unit="view",
        desc="teacher cache",
        disable=not progressbar,
    )
    for first in range(0, len(todo), batch_size):
        chunk = todo[first : first + batch_size]
        wavs = [load_view(row, view) for row, view in chunk]
        longest = max(w.shape[0] for w in wavs)
        batch = torch.zeros(len(wavs), longest)
        for i, w in enumerate(wavs):
            batch[i, : w.shape[0]] = w
        lens = torch.tensor([w.shape[0] / longest for w in wavs])
        out = teacher(batch.to(device), lens.to(device))
        targets = torch.tensor([segments[row][1] for row, _ in chunk])
        writer.write(
            [row for row, _ in chunk],
            [view for _, view in chunk],
            out["logits"],
            out["embedding"],
            targets,
        )
        bar.update(len(chunk))
    bar.close()
    writer.finish()
    seconds = time.time() - start
    logger.info(
        "Teacher cache %s complete: %d views in %.1f s (%.1f views/s), %.1f MB",
        folder,
        len(todo),
        seconds,
        len(todo) / max(seconds, 1e-9),
        folder_size(folder) / 1e6,
    )


def folder_size(folder):
    """Bytes of the files in ``folder``."""
    return sum(
        os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)
    )


def bytes_per_view(classes, embedding_dim, topk=None):
    """Disk bytes of one view (see the module docstring for the layout).

    Example
    -------
    >>> bytes_per_view(269, 192)  # mini corpus: full float16 logits
    923
    >>> bytes_per_view(5994, 192, topk=255)  # VoxCeleb2 classes
    1925
    """
    per = 2 * embedding_dim + 1  # embedding, done flag
    if topk:
        return per + (topk + 1) * (4 + 2) + 4
    return per + 2 * classes


def cache_settings(hparams):
    """The ``teacher_cache`` YAML entry, checked, with its defaults.

    Keys: ``enabled`` (False: the live teacher), ``folder`` (default
    ``<save_folder>/teacher_cache``), ``batch_size`` (32), ``topk``
    (None: full logits up to ``FULL_LOGITS_MAX_CLASSES`` classes), ``T``
    (the distillation temperature the top-k tail is summarised at; needed
    with ``topk``), ``dtype`` (float16, or float32 at twice the size: the
    teacher's outputs exactly), ``rebuild`` (False: a cache built for
    other settings is an error). The views are ``train_views``.
    """
    spec = dict(hparams.get("teacher_cache") or {})
    keys = {"enabled", "folder", "batch_size", "topk", "T", "dtype", "rebuild"}
    unknown = set(spec) - keys
    if unknown:
        raise ValueError(
            f"teacher_cache has unknown keys {sorted(unknown)} (expected "
            f"some of {sorted(keys)})"
        )
    if not hparams.get("train_views"):
        raise ValueError(
            "teacher_cache needs train_views (the number of stored views "
            "per training segment), e.g. --train_views=8"
        )
    if hparams.get("teacher_taps"):
        raise ValueError(
            "teacher_cache stores logits and embeddings only: "
            f"teacher_taps ({sorted(hparams['teacher_taps'])}) need the live "
            "teacher; remove teacher_cache or the taps"
        )
    if hparams.get("wav_augment") is not None:
        raise ValueError(
            "teacher_cache: wav_augment (batch-level augmentation from the "
            "global random state) cannot be replayed per view; set "
            "wav_augment to null, or train without the cache"
        )
    spec.setdefault(
        "folder", os.path.join(hparams["save_folder"], "teacher_cache")
    )
    spec.setdefault("batch_size", 32)
    spec.setdefault("topk", None)
    spec.setdefault("dtype", "float16")
    spec.setdefault("rebuild", False)
    if spec["dtype"] not in ("float16", "float32"):
        raise ValueError(
            f"teacher_cache: dtype must be float16 or float32, got "
            f"{spec['dtype']!r}"
        )
    if spec["topk"] and not spec.get("T"):
        raise ValueError(
            "teacher_cache: topk needs T, the distillation temperature at "
            "which the tail of the logits is summarised"
        )
    return spec


def prepare_teacher_cache(hparams, teacher, label_encoder, progressbar=True):
    """Opens the run's teacher cache, building it first if needed.

    The main process builds (or resumes) it; every process then opens it.

    Arguments
    ---------
    hparams : dict
        The loaded recipe YAML (``teacher_cache``, ``train_views``, the
        data settings of ``speechbrain_kd.data.dataio_prep``).
    teacher : speechbrain_kd.teachers.FrozenTeacher
        The teacher (run only while building).
    label_encoder : speechbrain.dataio.encoder.CategoricalEncoder
        The classes (the teacher's).
    progressbar : bool
        Show the build's progress bar.

    Returns
    -------
    TeacherCache
    """
    import speechbrain as sb

    from speechbrain_kd.data import (
        audio_options,
        load_random_crop,
        read_csv,
        resolve_path,
        view_generator,
        views_seed,
    )

    spec = cache_settings(hparams)
    rows = read_csv(hparams["train_csv"])
    views = int(hparams["train_views"])
    classes = teacher.num_classes
    topk = spec["topk"]
    if topk is None and classes > FULL_LOGITS_MAX_CLASSES:
        topk = 255
    if topk and topk >= classes:
        topk = None
    sample_rate = hparams["sample_rate"]
    crop = int(hparams["sentence_len"] * sample_rate)
    seed = views_seed(hparams)
    audio_opts = audio_options(hparams)
    data_folder = hparams["data_folder"]
    source = os.path.join(hparams["save_folder"], "teacher")
    if os.path.isdir(str(hparams["teacher_source"])):
        source = str(hparams["teacher_source"])
    meta = {
        "key": {
            "teacher": teacher_digest(source),
            "teacher_logit_scale": teacher.logit_scale,
            "manifest": file_digest([hparams["train_csv"]]),
            "views_seed": seed,
            "views": views,
            "crop_samples": crop,
            "sample_rate": sample_rate,
            "resample": audio_opts["resample"],
            "downmix": audio_opts["downmix"],
        },
        "segments": len(rows),
        "views": views,
        "classes": classes,
        "embedding_dim": None,
        "topk": topk,
        "T": float(spec["T"]) if topk else None,
        "dtype": spec["dtype"],
    }

    def load_view(row, view):
        entry = rows[row]
        return load_random_crop(
            resolve_path(data_folder, entry["wav"]),
            int(entry["start"]),
            int(entry["stop"]),
            crop,
            view_generator(seed, view, entry["ID"]),
            **audio_opts,
        )

    folder = spec["folder"]
    if sb.utils.distributed.if_main_process():
        probe = teacher(load_view(0, 0).unsqueeze(0).to(_device(teacher)))
        meta["embedding_dim"] = int(probe["embedding"].shape[-1])
        if os.path.exists(os.path.join(folder, "meta.json")):
            if spec["rebuild"]:
                try:
                    check_meta(folder, meta)
                except ValueError:
                    logger.warning("Rebuilding the teacher cache %s", folder)
                    shutil.rmtree(folder)
            else:
                check_meta(folder, meta)
        if not os.path.exists(folder):
            segments = [
                (r["ID"], label_encoder.encode_label(r["spk_id"])) for r in rows
            ]
            build_cache(
                folder,
                meta,
                teacher,
                segments,
                load_view,
                batch_size=spec["batch_size"],
                progressbar=progressbar,
            )
    sb.utils.distributed.ddp_barrier()
    cache = TeacherCache(folder)
    logger.info(
        "Teacher cache %s: %d segments x %d views, %s, %.1f MB",
        folder,
        len(rows),
        views,
        f"top-{topk} logits + tail" if topk else "full float16 logits",
        folder_size(folder) / 1e6,
    )
    return cache


def _device(module):
    return next(iter(module.parameters())).device
