"""The datasets of the recipes: training crops, whole rows, manifests.

``dataio_prep`` builds the train / valid / test datasets of a speaker
recipe (every manifest, the trial list and every audio header checked
first); ``prepare_datasets`` adds ``random_chunk`` (VoxCeleb: crops of the
whole file of a row); ``manifest_dataset`` reads whole rows of a manifest
(the cohort and PLDA rows of scoring). Whole rows are read by one
pipeline, ``audio_pipeline``.

A training or validation segment shorter than the training crop
(``sentence_len``) is kept whole and zero-padded in its batch: the
relative lengths of the batch mask the padding in the features'
normalisation and in the pooling, so 1-s utterances with a 1-s crop (or
shorter ones) train on their real length. Segments shorter than
``min_sentence_len`` seconds (default: half the crop) are rejected.
"""

import os

import speechbrain as sb
import torch

from speechbrain_kd.data.audio import audio_options, check_audio, load_audio
from speechbrain_kd.data.crops import crop_generator, load_random_crop
from speechbrain_kd.data.manifests import read_csv, resolve_path, write_csv
from speechbrain_kd.data.trials import check_trials
from speechbrain_kd.data.views import epoch_view, load_view_crop, views_seed


class EpochDataset(sb.dataio.dataset.DynamicItemDataset):
    """A ``DynamicItemDataset`` that knows the current training epoch.

    ``KDBrain`` calls ``set_epoch`` at the start of every training epoch
    (before the data-loading workers start), so that per-example
    randomness (``crop_generator``) is a function of ``(seed, epoch, ID)``.
    Not for ``persistent_workers`` loaders (the workers would keep the
    epoch they started with).

    Example
    -------
    >>> from speechbrain_kd.data import EpochDataset
    >>> ds = EpochDataset({"a": {"x": 1}})
    >>> ds.set_epoch(3)
    >>> ds.epoch
    3
    """

    epoch = 0

    def set_epoch(self, epoch):
        """Sets the epoch that seeds per-example randomness."""
        self.epoch = int(epoch)


def audio_pipeline(hparams):
    """The ``sig`` pipeline of whole manifest rows (no crop).

    ``load_audio`` of each row's ``wav`` (relative to ``data_folder``),
    ``[start, stop)``, with the YAML's ``audio_options``: audio at another
    rate is resampled when ``resample`` is True (a clear error otherwise)
    and multi-channel audio is downmixed (``downmix``). The validation and
    test sets of ``dataio_prep`` and the cohort / PLDA rows of
    ``manifest_dataset`` all read their audio through it.

    Arguments
    ---------
    hparams : dict
        Needs ``data_folder`` and ``sample_rate``; optional ``resample``
        and ``downmix`` (``audio_options``).

    Returns
    -------
    callable
        A SpeechBrain dynamic item taking ``wav``, ``start``, ``stop`` and
        providing ``sig``.

    Example
    -------
    >>> import numpy, soundfile
    >>> tmp = getfixture("tmpdir")
    >>> soundfile.write(tmp / "a.wav", numpy.zeros(8000), 8000)
    >>> hparams = {"data_folder": str(tmp), "sample_rate": 16000}
    >>> audio_pipeline(dict(hparams, resample=True))("a.wav", 0, 8000).shape
    torch.Size([16000])
    """
    data_folder = hparams["data_folder"]
    audio_opts = audio_options(hparams)

    @sb.utils.data_pipeline.takes("wav", "start", "stop")
    @sb.utils.data_pipeline.provides("sig")
    def audio(wav, start, stop):
        return load_audio(
            resolve_path(data_folder, wav),
            int(start),
            int(stop),
            **audio_opts,
        )

    return audio


def dataio_prep(hparams, label_encoder):
    """Builds the train / valid / test datasets of a speaker recipe.

    Training examples are random crops of ``sentence_len`` seconds of each
    manifest row (a shorter row is kept whole and padded in its batch);
    validation examples are the whole rows (held-out crops); test examples
    are whole utterances (for embedding extraction). Every manifest, the
    trial list and (``check_audio``) every audio header are checked first,
    so that bad input fails before the first training step.

    Arguments
    ---------
    hparams : dict
        Needs ``train_csv``, ``valid_csv``, ``test_csv``, ``data_folder``,
        ``sentence_len`` and ``sample_rate``. Optional: ``seed`` (of the
        crops, default 0), ``resample`` (default False: audio at another
        rate is an error), ``downmix`` (default True: multi-channel audio
        is averaged), ``min_sentence_len`` (seconds, default half of
        ``sentence_len``: shorter train/valid rows are an error),
        ``check_audio`` (default True), ``verification_file`` (its
        entries must be test IDs) and ``train_views`` (V: each training
        segment has V fixed crops, one drawn per epoch, see
        ``speechbrain_kd.data.views``; the training set then also provides
        ``view`` and ``cache_index``, the row of the segment in
        ``train_csv``; default None: a new crop every epoch).
    label_encoder : speechbrain.dataio.encoder.CategoricalEncoder
        Maps ``spk_id`` to class indices (must know every training speaker).

    Returns
    -------
    dict
        ``{"train", "valid", "test"}`` datasets providing ``sig`` and
        (train/valid) ``spk_id_encoded``; ``train`` is an ``EpochDataset``.
    """
    data_folder = hparams["data_folder"]
    sample_rate = hparams["sample_rate"]
    crop = int(hparams["sentence_len"] * sample_rate)
    seed = hparams.get("seed", 0)
    audio_opts = audio_options(hparams)
    min_len = hparams.get("min_sentence_len")
    if min_len is None:
        min_len = hparams["sentence_len"] / 2
    if not 0 <= min_len <= hparams["sentence_len"]:
        raise ValueError(
            f"min_sentence_len must be in [0, sentence_len="
            f"{hparams['sentence_len']}] seconds, got {min_len}"
        )

    datasets, rows = {}, {}
    for split in ("train", "valid", "test"):
        csv_path = hparams[f"{split}_csv"]
        rows[split] = read_csv(csv_path)  # columns, numbers, unique IDs
        if hparams.get("check_audio", True):
            check_audio(
                rows[split],
                csv_path,
                data_folder,
                min_duration=0.0 if split == "test" else min_len,
                **audio_opts,
            )
        cls = EpochDataset if split == "train" else None
        cls = cls or sb.dataio.dataset.DynamicItemDataset
        datasets[split] = cls.from_csv(
            csv_path, replacements={"data_root": data_folder}
        )
    if hparams.get("verification_file"):
        check_trials(hparams["verification_file"], hparams["test_csv"])

    def resolve(wav):
        return resolve_path(data_folder, wav)

    train_set = datasets["train"]

    views = hparams.get("train_views")
    index = {row["ID"]: i for i, row in enumerate(rows["train"])}

    @sb.utils.data_pipeline.takes("id")
    @sb.utils.data_pipeline.provides("view", "cache_index")
    def view_pipeline(utt_id):
        yield epoch_view(seed, train_set.epoch, utt_id, views)
        yield index[utt_id]

    @sb.utils.data_pipeline.takes("id", "wav", "start", "stop")
    @sb.utils.data_pipeline.provides("sig")
    def train_audio(utt_id, wav, start, stop):
        if views:
            return load_view_crop(
                resolve(wav),
                int(start),
                int(stop),
                crop,
                views_seed(hparams),
                epoch_view(seed, train_set.epoch, utt_id, views),
                utt_id,
                **audio_opts,
            )
        generator = crop_generator(seed, train_set.epoch, utt_id)
        return load_random_crop(
            resolve(wav), int(start), int(stop), crop, generator, **audio_opts
        )

    @sb.utils.data_pipeline.takes("spk_id")
    @sb.utils.data_pipeline.provides("spk_id_encoded")
    def label_pipeline(spk_id):
        return torch.LongTensor([label_encoder.encode_label(spk_id)])

    unknown = sorted(
        {
            row["spk_id"]
            for split in ("train", "valid")
            for row in rows[split]
            if row["spk_id"] not in label_encoder.lab2ind
        }
    )
    if unknown:
        raise ValueError(
            f"{len(unknown)} speakers of {hparams['train_csv']} / "
            f"{hparams['valid_csv']} are unknown to the label encoder "
            f"(first: {unknown[:5]}); the student's classes follow the "
            "teacher's label encoder"
        )

    sb.dataio.dataset.add_dynamic_item([datasets["train"]], train_audio)
    sb.dataio.dataset.add_dynamic_item(
        [datasets["valid"], datasets["test"]], audio_pipeline(hparams)
    )
    sb.dataio.dataset.add_dynamic_item(
        [datasets["train"], datasets["valid"]], label_pipeline
    )
    if views:
        sb.dataio.dataset.add_dynamic_item([datasets["train"]], view_pipeline)
    for split, ds in datasets.items():
        keys = (
            ["id", "sig"]
            if split == "test"
            else ["id", "sig", "spk_id_encoded"]
        )
        if split == "train" and views:
            keys += ["view", "cache_index"]
        ds.set_output_keys(keys)
    return datasets


def manifest_dataset(rows, hparams):
    """Whole-row audio (``id``, ``sig``, ``spk_id``) of manifest rows.

    The audio is read by ``audio_pipeline`` (resampled / downmixed as the
    YAML says), as the test set of ``dataio_prep``.
    """
    data = {
        row["ID"]: {
            "wav": row["wav"],
            "start": row["start"],
            "stop": row["stop"],
            "spk_id": row["spk_id"],
            "duration": row["duration"],
            "length": row["stop"] - row["start"],
        }
        for row in rows
    }
    dataset = sb.dataio.dataset.DynamicItemDataset(data)

    sb.dataio.dataset.add_dynamic_item([dataset], audio_pipeline(hparams))
    dataset.set_output_keys(["id", "sig", "spk_id"])
    return dataset


def random_chunk_csv(train_csv, dest, sample_rate):
    """A copy of a manifest whose rows span their whole audio file.

    SpeechBrain's VoxCeleb recipe (``random_chunk: True``) trains on a
    random crop of the whole *file* of each ``train.csv`` row, whose
    ``duration`` column is the file's duration (rows are 3 s chunks of
    it, so long files are drawn more often). With ``start=0`` and
    ``stop=duration * sample_rate``, ``dataio_prep``'s random
    crop of ``sentence_len`` does the same.

    Example
    -------
    >>> import os
    >>> src = os.path.join(getfixture("tmpdir"), "t.csv")
    >>> write_csv([dict(ID="a_0.0_3.0", duration=7.5, wav="a.wav",
    ...                 start=0, stop=48000, spk_id="s")], src)
    >>> dest = random_chunk_csv(src, src + ".rc", 16000)
    >>> row = read_csv(dest)[0]
    >>> row["start"], row["stop"]
    (0, 120000)
    """
    rows = [
        # floor: the 4-decimal duration never points past the file's end
        dict(row, start=0, stop=int(row["duration"] * sample_rate))
        for row in read_csv(train_csv)
    ]
    write_csv(rows, dest)
    return dest


def prepare_datasets(hparams, label_encoder):
    """``dataio_prep``, with ``random_chunk`` support.

    With ``random_chunk: True`` (VoxCeleb manifests, whose ``duration`` is
    the file's), training examples are random ``sentence_len`` crops of
    the whole file of each row (``random_chunk_csv``).
    """
    if not hparams.get("random_chunk"):
        return dataio_prep(hparams, label_encoder)
    dest = os.path.join(hparams["save_folder"], "train_random_chunk.csv")
    sb.utils.distributed.run_on_main(
        random_chunk_csv,
        args=[hparams["train_csv"], dest, hparams["sample_rate"]],
    )
    return dataio_prep(dict(hparams, train_csv=dest), label_encoder)
