"""Knowledge distillation for speaker verification on SpeechBrain."""

__version__ = "0.1.0"
