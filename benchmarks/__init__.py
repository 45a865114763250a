"""Speed and quality benchmarks. `make bench` (or `python -m benchmarks.run [--quick]`) runs them
and rewrites docs/benchmarks.md. Numbers live here, never in timed unit tests.

Imports the library (``pipelines``, ``gan_aug``, ``anomaly``), never ``flows``."""
