"""Benchmarks of hf_posenc-converted models against the same models unconverted (`python -m benchmarks.run`)."""
