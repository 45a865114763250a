"""Speed and quality benchmarks. `make bench` (or `python -m benchmarks.run [--quick]`) runs them
and rewrites docs/benchmarks.md. Numbers live here, never in timed unit tests."""
