"""Building blocks for students and distillation heads.

- ``aggregation``: frame-level outputs of several layers -> one vector
  (``StatisticsAggregator``; the learnable ``LDEAggregator`` /
  ``LDEPooling``), used by the multi-level embedding distillation of
  ``speechbrain_kd.objectives.embedding``.
- ``dynamic``: ``DynamicECAPA``, an ECAPA-TDNN student that learns its own
  channel widths, on the width gates of ``widths`` and the analytic MACs of
  ``ecapa_macs``.
- ``mixer``: the modified MLP-Mixer speaker encoder (``MixerSpeaker``:
  convolutional token mixing, Max-Feature-Map channel mixing), a student
  of a WavLM teacher.
- ``transformer``: ``TransformerSpeaker``, the equal-depth Transformer
  of the same shape (the complexity comparison).
- ``front_end``: the Fbank-patch and raw-waveform front ends of both
  (``FrontEnd``) and their ``compute_features`` / ``mean_var_norm``
  (``FrontEndFeatures`` / ``FrontEndNormalization``).
- ``heads``: ``SpeakerHead``, attentive statistics pooling and an
  embedding layer over frames (Mixer, Transformer, WavLM).
- ``wavlm``: ``WavLMEncoder``, a (frozen) Hugging Face WavLM with a learned
  weighted sum of its hidden layers and a speaker head (needs the ``hf``
  extra: ``pip install speechbrain_kd[hf]``).
- ``waveform``: ``RawWaveform`` / ``WaveformNormalization``, the
  ``compute_features`` / ``mean_var_norm`` of raw-waveform models.
"""
