"""WavLM teacher (speechbrain_kd.lobes.wavlm) and the WavLM -> MLP-Mixer
recipe: a tiny random WavLM saved with save_pretrained and reloaded, frozen
weights, layer weights, taps of its layers, padding, errors, and a tiny
end-to-end run (train_teacher.py teacher_wavlm.yaml, then train_kd.py
wavlm_mixer.yaml, then EncoderClassifier.from_hparams of both)."""

import json
import sys

import pytest
import torch
from conftest import RECIPE, TINY_RUN, run_recipe

from speechbrain_kd.lobes.heads import SpeakerHead
from speechbrain_kd.lobes.mixer import MixerSpeaker
from speechbrain_kd.taps import LayerTaps

transformers = pytest.importorskip("transformers")
from speechbrain_kd.lobes.wavlm import WavLMEncoder  # noqa: E402

TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=(16,) * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
)


pytestmark = pytest.mark.usefixtures("one_thread")


def save_tiny_wavlm(path, **config):
    torch.manual_seed(0)
    cfg = transformers.WavLMConfig(**dict(TINY, **config))
    model = transformers.WavLMModel(cfg).eval()
    model.save_pretrained(str(path))
    return model


@pytest.fixture(scope="module")
def tiny_wavlm(tmp_path_factory):
    """A random WavLM Base-like model (GroupNorm feature encoder), saved."""
    path = tmp_path_factory.mktemp("wavlm") / "tiny"
    return path, save_tiny_wavlm(path)


@pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")
def test_local_round_trip_and_frozen_weights(tiny_wavlm):
    path, reference = tiny_wavlm
    torch.manual_seed(1)
    enc = WavLMEncoder(str(path), emb_dim=8)
    # Same weights as the model saved
    ref_state = reference.state_dict()
    for key, value in enc.wavlm.state_dict().items():
        torch.testing.assert_close(value, ref_state[key], rtol=0, atol=0)
    wavs = torch.randn(2, 16000)
    lengths = torch.tensor([1.0, 0.75])
    hidden, frames = enc.hidden_states(wavs, lengths)
    mask = torch.zeros(2, 16000, dtype=torch.long)
    mask[0], mask[1, :12000] = 1, 1
    with torch.no_grad():
        ref = reference(wavs, attention_mask=mask, output_hidden_states=True)
    assert len(hidden) == 3 and frames.tolist() == [49, 37]
    # (float rounding only: torch's attention takes another kernel when no
    # weight requires a gradient)
    for a, b in zip(hidden, ref.hidden_states):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    # Frozen: only the layer weights and the head get gradients; WavLM stays
    # in eval mode (no dropout) when the Brain puts modules in train mode
    enc.train()
    assert not enc.wavlm.training and enc.head.training
    out = enc(wavs, lengths)
    assert out.shape == (2, 1, 8)
    out.pow(2).sum().backward()
    assert all(p.grad is None for p in enc.wavlm.parameters())
    assert not any(p.requires_grad for p in enc.wavlm.parameters())
    assert enc.layer_weights.grad.abs().sum() > 0
    assert all(p.grad is not None for p in enc.head.parameters())
    # Deterministic in train mode (frozen WavLM: no dropout, no masking)
    torch.testing.assert_close(
        enc.hidden_states(wavs, lengths)[0][-1], hidden[-1]
    )
    # Its state dict (WavLM included) restores the trained encoder exactly
    enc.eval()
    again = WavLMEncoder(str(path), emb_dim=8).eval()
    again.load_state_dict(enc.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(
            again(wavs, lengths), enc(wavs, lengths), rtol=0, atol=0
        )


def test_weighted_sum_of_hidden_states(tiny_wavlm):
    path, _ = tiny_wavlm
    enc = WavLMEncoder(str(path), emb_dim=8).eval()
    captured = {}
    enc.head.register_forward_pre_hook(
        lambda m, args, kwargs: captured.update(x=args[0]), with_kwargs=True
    )
    with torch.no_grad():
        enc.layer_weights.copy_(torch.tensor([0.0, 1.0, 2.0]))
        wavs = torch.randn(1, 8000)
        enc(wavs)
    hidden, _ = enc.hidden_states(wavs)
    w = torch.softmax(torch.tensor([0.0, 1.0, 2.0]), 0)
    expected = sum(wi * h for wi, h in zip(w, hidden))
    torch.testing.assert_close(captured["x"], expected)
    last = WavLMEncoder(str(path), emb_dim=8, weighted_sum=False)
    assert not last.layer_weights.requires_grad


def test_fine_tuning_mode_trains_the_transformer(tiny_wavlm):
    path, _ = tiny_wavlm
    enc = WavLMEncoder(str(path), emb_dim=8, freeze=False)
    assert enc.wavlm.encoder.layers[0].attention.q_proj.weight.requires_grad
    conv = enc.wavlm.feature_extractor.conv_layers[0].conv.weight
    assert not conv.requires_grad  # freeze_feature_encoder
    enc.train()
    assert enc.wavlm.training
    enc(torch.randn(2, 8000)).sum().backward()
    dense = enc.wavlm.encoder.layers[1].feed_forward.output_dense
    assert dense.weight.grad.abs().sum() > 0


def test_layer_taps_reach_wavlm_layers(tiny_wavlm):
    path, _ = tiny_wavlm
    enc = WavLMEncoder(str(path), emb_dim=8).eval()
    taps = LayerTaps(
        enc, {"l0": "wavlm.encoder.layers.0", "l1": "wavlm.encoder.layers.1"}
    )
    wavs, lengths = torch.randn(2, 16000), torch.tensor([1.0, 0.5])
    with torch.no_grad():
        enc(wavs, lengths)
    outputs = taps.pop()
    hidden, _ = enc.hidden_states(wavs, lengths)
    taps.pop()
    # Layer i's tap is Hugging Face's hidden_states[i + 1], [batch, T, dim]
    for i in (0, 1):
        assert outputs[f"l{i}"].shape == (2, 49, 32)
        torch.testing.assert_close(outputs[f"l{i}"], hidden[i + 1])
    with pytest.raises(ValueError, match="wavlm.encoder.layers"):
        LayerTaps(enc, {"x": "wavlm.encoder.layers.7"})


def test_padding_with_layernorm_feature_encoder(tmp_path):
    """WavLM Large's LayerNorm feature encoder + the default head: each
    utterance of a padded batch gets the embedding it gets alone."""
    path = tmp_path / "large_like"
    save_tiny_wavlm(path, feat_extract_norm="layer", do_stable_layer_norm=True)
    torch.manual_seed(0)
    enc = WavLMEncoder(str(path), emb_dim=8).eval()
    items = [torch.randn(n) for n in (16000, 11000, 6001)]
    batch = torch.zeros(3, 16000)
    for i, x in enumerate(items):
        batch[i, : len(x)] = x
        batch[i, len(x) :] = 5.0  # garbage padding
    lengths = torch.tensor([len(x) / 16000 for x in items])
    with torch.no_grad():
        out = enc(batch, lengths)
        for i, x in enumerate(items):
            torch.testing.assert_close(
                out[i : i + 1], enc(x.unsqueeze(0)), rtol=0, atol=1e-5
            )


def test_errors(tiny_wavlm, tmp_path, monkeypatch):
    path, _ = tiny_wavlm
    with pytest.raises(FileNotFoundError, match="config.json"):
        WavLMEncoder(str(tmp_path / "nowhere"))
    enc = WavLMEncoder(str(path), emb_dim=8)
    with pytest.raises(ValueError, match="RawWaveform, not Fbank"):
        enc(torch.randn(2, 100, 80))
    # A head of the wrong input size names the WavLM hidden size
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

    wrong = WavLMEncoder(
        str(path), head=ECAPA_TDNN(24, channels=[8] * 4 + [24], lin_neurons=8)
    )
    with pytest.raises(RuntimeError, match="wavlm_dim"):
        wrong(torch.randn(2, 8000))
    # Without transformers: an ImportError naming the "hf" extra
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match=r"speechbrain_kd\[hf\]"):
        WavLMEncoder(str(path))


def test_teacher_yaml_builds_a_frozen_wavlm_teacher(tiny_wavlm):
    from hyperpyyaml import load_hyperpyyaml

    path, _ = tiny_wavlm
    with open(RECIPE / "hparams" / "teacher_wavlm.yaml") as f:
        hp = load_hyperpyyaml(
            f,
            {
                "data_folder": "unused",
                "wavlm_source": str(path),
                "wavlm_dim": 32,
                "channels": 16,
                "emb_dim": 16,
            },
        )
    model = hp["embedding_model"]
    assert isinstance(model, WavLMEncoder) and model.freeze
    assert type(model.head).__name__ == "ECAPA_TDNN"
    wavs, lengths = torch.randn(2, 16000), torch.tensor([1.0, 0.6])
    feats = hp["mean_var_norm"](hp["compute_features"](wavs), lengths)
    model.eval()
    assert model(feats, lengths).shape == (2, 1, 16)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert "layer_weights" in trainable
    assert not any(n.startswith("wavlm.") for n in trainable)


# ------------------------------------------------------------ tiny recipe


def test_tiny_wavlm_teacher_and_mixer_student(tiny_data, tiny_wavlm, tmp_path):
    from speechbrain.inference.speaker import EncoderClassifier

    from speechbrain_kd.teachers import FrozenTeacher

    wavlm_path, _ = tiny_wavlm
    teacher = tmp_path / "teacher"
    run_recipe(
        "train_teacher.py",
        "teacher_wavlm.yaml",
        f"--data_folder={tiny_data}",
        f"--output_folder={teacher}",
        f"--prep_folder={tmp_path}/prep",
        f"--wavlm_source={wavlm_path}",
        "--wavlm_dim=32",
        "--channels=16",
        "--emb_dim=16",
        "--number_of_epochs=1",
        *TINY_RUN,
    )
    # The frozen WavLM was not trained: its checkpointed weights are the
    # saved model's
    state = torch.load(teacher / "pretrained" / "embedding_model.ckpt")
    saved = transformers.WavLMModel.from_pretrained(str(wavlm_path))
    for key, value in saved.state_dict().items():
        torch.testing.assert_close(state[f"wavlm.{key}"], value)
    assert not torch.equal(state["layer_weights"], torch.zeros(3))

    student = tmp_path / "student"
    run_recipe(
        "train_kd.py",
        "wavlm_mixer.yaml",
        f"--data_folder={tiny_data}",
        f"--output_folder={student}",
        f"--prep_folder={tmp_path}/prep",
        f"--teacher_source={teacher}/pretrained",
        "--teacher_dim=32",
        "--teacher_layer_low=0",
        "--teacher_layer_mid=1",
        "--teacher_layer_high=1",
        "--dim=16",
        "--num_blocks=2",
        "--student_block_low=0",
        "--student_block_mid=1",
        "--student_block_high=1",
        "--emb_dim=16",
        "--number_of_epochs=1",
        *TINY_RUN,
    )
    log = (student / "train_log.txt").read_text()
    for key in ("train task", "train hidden", "train trkd"):
        assert key in log, key
    for alias in ("low", "mid", "high"):
        assert f"train hidden_{alias}_l1" in log
        assert f"train hidden_{alias}_cos" in log
    result = json.loads((student / "verification.json").read_text())
    assert set(result) == {"teacher", "student"}
    # The projection heads trained and were checkpointed with the student
    ckpts = list((student / "save").glob("CKPT+*/distill_hidden.ckpt"))
    assert ckpts
    heads = torch.load(ckpts[0])
    assert heads["heads.0.weight"].shape == (32, 16)

    # Both published folders load with EncoderClassifier.from_hparams
    loaded = EncoderClassifier.from_hparams(
        source=str(student / "pretrained"), savedir=str(tmp_path / "load")
    )
    assert isinstance(loaded.mods.embedding_model, MixerSpeaker)
    assert isinstance(loaded.mods.embedding_model.head, SpeakerHead)
    wavs = torch.randn(2, 16000)
    assert loaded.encode_batch(wavs).shape == (2, 1, 16)
    card = (student / "pretrained" / "README.md").read_text()
    assert "MLP-Mixer student distilled from WavLM" in card
    t_loaded = EncoderClassifier.from_hparams(
        source=str(teacher / "pretrained"), savedir=str(tmp_path / "tload")
    )
    assert isinstance(t_loaded.mods.embedding_model, WavLMEncoder)
    assert t_loaded.encode_batch(wavs).shape == (2, 1, 16)
    # The published teacher, tapped as in wavlm_mixer.yaml
    frozen = FrozenTeacher.from_pretrained(
        str(teacher / "pretrained"),
        savedir=str(tmp_path / "t"),
        taps={"low": "wavlm.encoder.layers.0"},
    )
    out = frozen(wavs, torch.tensor([1.0, 0.5]))
    assert out["low"].shape == (2, 49, 32) and out["logits"].shape == (2, 9)
