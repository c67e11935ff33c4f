"""ONNX export of published folders: ONNX Runtime == PyTorch."""

import os

import pytest
import torch
from conftest import RECIPE

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

SMALL = {
    "teacher_ecapa.yaml": {"channels": 16, "emb_dim": 24},
    "mixer_trkd.yaml": {"dim": 16, "num_blocks": 2, "emb_dim": 12},
    "teacher_xvector.yaml": {
        "channels": 16,
        "wide_channels": 48,
        "emb_dim": 24,
    },
}


def publish_random(name, dest):
    """A random tiny model published from a recipe YAML."""
    from hyperpyyaml import load_hyperpyyaml
    from speechbrain.dataio.encoder import CategoricalEncoder

    from speechbrain_kd.export import export_pretrained

    overrides = {
        "data_folder": "unused",
        "output_folder": str(dest.parent / "run"),
        "out_n_neurons": 5,
        **SMALL[name],
    }
    yaml_file = str(RECIPE / "hparams" / name)
    with open(yaml_file) as f:
        hp = load_hyperpyyaml(f, overrides)
    torch.manual_seed(0)
    for module in hp["modules"].values():
        for p in module.parameters():
            torch.nn.init.normal_(p, std=0.2)
    encoder = CategoricalEncoder()
    encoder.update_from_iterable(list("abcde"))
    card = {"title": "test model", "distillation": "none"}
    export_pretrained(
        str(dest), yaml_file, overrides, hp["modules"], encoder, card=card
    )
    return dest


@pytest.fixture(scope="module", params=sorted(SMALL))
def exported(request, tmp_path_factory):
    from speechbrain_kd.onnx_export import export_onnx

    folder = tmp_path_factory.mktemp(request.param.split(".")[0])
    dest = publish_random(request.param, folder / "pretrained")
    info = export_onnx(str(dest))
    return dest, info


def test_onnx_matches_encoder_classifier(exported, tmp_path):
    """The ONNX graph gives EncoderClassifier's embeddings, any length,
    padded batches included."""
    import onnxruntime as ort
    from speechbrain.inference.speaker import EncoderClassifier

    dest, info = exported
    assert info["batched"] and info["max_rel_diff"] < 1e-4
    assert os.path.isfile(dest / "embedding_model.onnx")
    model = EncoderClassifier.from_hparams(
        source=str(dest), savedir=str(tmp_path / "sv")
    )
    sess = ort.InferenceSession(info["path"])
    g = torch.Generator().manual_seed(1)
    n = 16000 * 2 + 123
    wav = 0.1 * torch.randn(3, n, generator=g)
    lens = torch.tensor([1.0, 0.6, 0.85])
    for i, rel in enumerate(lens.tolist()):
        wav[i, round(rel * n) :] = 0.0
    got = sess.run(None, {"wav": wav.numpy(), "wav_lens": lens.numpy()})[0]
    ref = model.encode_batch(wav, lens).squeeze(1)
    # x-vector: SpeechBrain adds random offsets (<= 9e-5) to its pooled
    # means, which the exported graph leaves out
    tol = 2e-3 if "xvector" in str(dest) else 1e-4
    assert torch.allclose(torch.from_numpy(got), ref, atol=tol)
    # one short utterance, another length than the export example
    short = wav[:1, :8000]
    one = sess.run(None, {"wav": short.numpy(), "wav_lens": lens[:1].numpy()})
    assert torch.allclose(
        torch.from_numpy(one[0]), model.encode_batch(short)[:, 0], atol=tol
    )


def test_model_card_has_onnx_section(exported):
    dest, _ = exported
    text = (dest / "README.md").read_text()
    assert "## ONNX" in text and "embedding model parameters" in text
    assert "MACs" in text
    # exporting twice keeps one section
    from speechbrain_kd.onnx_export import _update_card

    _update_card(str(dest / "README.md"), {**exported[1]})
    assert (dest / "README.md").read_text().count("## ONNX") == 1


def test_single_utterance_fallback(tmp_path, monkeypatch):
    """A model the batched export cannot trace is exported for one
    utterance at a time, still checked against PyTorch."""
    import onnxruntime as ort

    from speechbrain_kd import onnx_export

    dest = publish_random("teacher_ecapa.yaml", tmp_path / "pretrained")
    real = onnx_export._export
    calls = []

    def fail_batched(module, args, path, dynamic_shapes, opset):
        calls.append(len(args))
        if len(args) == 2:
            raise RuntimeError("cannot trace the batch")
        return real(module, args, path, dynamic_shapes, opset)

    monkeypatch.setattr(onnx_export, "_export", fail_batched)
    info = onnx_export.export_onnx(str(dest), update_card=False)
    assert calls == [2, 1] and not info["batched"]
    sess = ort.InferenceSession(info["path"])
    assert [i.name for i in sess.get_inputs()] == ["wav"]


def test_export_errors(tmp_path, monkeypatch):
    from speechbrain_kd import onnx_export

    with pytest.raises(FileNotFoundError, match="not a published folder"):
        onnx_export.export_onnx(str(tmp_path))
    dest = publish_random("teacher_ecapa.yaml", tmp_path / "pretrained")
    monkeypatch.setattr(
        onnx_export,
        "onnx_differences",
        lambda *a, **k: {"max_rel_diff": 1.0, "max_abs_diff": 2.0},
    )
    with pytest.raises(RuntimeError, match="differ from PyTorch"):
        onnx_export.export_onnx(str(dest), update_card=False)
    # nothing half written
    assert not (dest / "embedding_model.onnx").exists()
    assert not any(p.name.endswith(".tmp") for p in dest.iterdir())


def test_int8_export(exported, tiny_data, tmp_path):
    """--int8: a static int8 model calibrated on training crops, checked
    against the float model (cosine), smaller than it, with the feature
    extraction (MatmulFbank's MatMul nodes) left in float."""
    import onnx
    import soundfile

    from speechbrain_kd.data import write_csv
    from speechbrain_kd.onnx import waveform_convs
    from speechbrain_kd.onnx_export import INT8_NAME, export_int8

    dest, info = exported
    if not info["batched"]:
        pytest.skip("int8 is checked on the batched exports")
    rows = []
    for i, path in enumerate(sorted(tiny_data.rglob("*.flac"))[:12]):
        n = int(soundfile.info(str(path)).frames)
        rows.append(
            dict(
                ID=f"u{i}",
                duration=n / 16000,
                wav=str(path),
                start=0,
                stop=n,
                spk_id="s",
            )
        )
    write_csv(rows, tmp_path / "calib.csv")
    got = export_int8(info, str(tmp_path / "calib.csv"), "", 12, 0.99)
    assert got["path"] == os.path.join(os.path.dirname(info["path"]), INT8_NAME)
    assert got["min_cosine"] >= 0.99 and got["size_ratio"] < 1.0
    model = onnx.load(got["path"])
    producer = {out: n.op_type for n in model.graph.node for out in n.output}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    matmuls = [n for n in model.graph.node if n.op_type == "MatMul"]
    # every convolution gets int8 weights, seen through DequantizeLinear;
    # the front end's DFT and mel products keep float inputs
    assert not waveform_convs(onnx.load(info["path"]))
    assert convs and all(
        producer.get(c.input[1]) == "DequantizeLinear" for c in convs
    )
    assert matmuls and not any(
        producer.get(i) == "DequantizeLinear" for m in matmuls for i in m.input
    )
    assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    with pytest.raises(RuntimeError, match="min_cosine"):
        export_int8(info, str(tmp_path / "calib.csv"), "", 12, 1.01)
    assert not os.path.exists(got["path"])  # nothing half written


def test_waveform_convs_of_a_patched_stft(tmp_path):
    """With SpeechBrain's Fbank kept in the graph (options MatmulFbank
    does not support), the STFT's DFT convolution is found and excluded
    from int8."""
    import onnx
    from speechbrain.lobes.features import Fbank

    from speechbrain_kd.onnx import fast_features, waveform_convs
    from speechbrain_kd.sb_private.export_patches import export_friendly

    fbank = Fbank(n_mels=24, f_min=20, filter_shape="gaussian")
    assert fast_features(fbank) is fbank
    path = str(tmp_path / "fbank.onnx")
    with export_friendly():
        torch.onnx.export(
            fbank, (torch.randn(1, 4000),), path, dynamo=True, verbose=False
        )
    model = onnx.load(path)
    names = waveform_convs(model, wav=model.graph.input[0].name)
    assert len(names) == 1
