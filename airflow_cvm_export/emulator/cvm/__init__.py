"""Emulated CVM API 3.0: :mod:`.models` owns images and export tasks, :mod:`.responses` parses and serializes."""
