"""Distillation objectives: pure functions of tensors (no Brain, no I/O).

Each function takes named tensors (``student_logits``, ``teacher_logits``,
``targets``, ``tau``, ...) and returns a scalar loss averaged over the batch.
``KDBrain`` passes every argument a function names from what it computed in
the forward pass, so a new method is one file here plus one YAML.
"""
