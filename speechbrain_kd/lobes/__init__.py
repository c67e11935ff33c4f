"""Building blocks for students and distillation heads.

- ``aggregation``: frame-level outputs of several layers -> one vector
  (``StatisticsAggregator``; the learnable ``LDEAggregator`` /
  ``LDEPooling``), used by the multi-level embedding distillation of
  ``speechbrain_kd.objectives.embedding``.
"""
