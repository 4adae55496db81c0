"""Emulated COS: :mod:`.models` owns buckets and objects, :mod:`.responses` parses and serializes."""
