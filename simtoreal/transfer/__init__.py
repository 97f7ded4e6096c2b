"""Sim-to-real transfer: paired data, adapter training, evaluation, fine-tuning, baselines."""
