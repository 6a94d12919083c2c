"""Benchmarks, run as commands: `python -m bench.<name> --help`. Figures go to bench/README.md."""
