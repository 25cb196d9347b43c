"""Speed benchmarks; run them as modules, e.g. `python -m maskgan_jax.benchmarks.dmn_speed`."""
