"""Building blocks for students and distillation heads.

- ``aggregation``: frame-level outputs of several layers -> one vector
  (``StatisticsAggregator``; the learnable ``LDEAggregator`` /
  ``LDEPooling``), used by the multi-level embedding distillation of
  ``speechbrain_kd.objectives.embedding``.
- ``mixer``: the modified MLP-Mixer speaker encoder (``MixerSpeaker``:
  convolutional token mixing, Max-Feature-Map channel mixing) and the
  equal-depth ``TransformerSpeaker``, students of a WavLM teacher.
- ``wavlm``: ``WavLMEncoder``, a (frozen) Hugging Face WavLM with a learned
  weighted sum of its hidden layers and a speaker head (needs the ``hf``
  extra: ``pip install speechbrain_kd[hf]``).
- ``waveform``: ``RawWaveform`` / ``WaveformNormalization``, the
  ``compute_features`` / ``mean_var_norm`` of raw-waveform models.
"""
