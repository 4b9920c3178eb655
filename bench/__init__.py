"""fastco's benchmarks: the C context-switch microbenchmark, and the echo
benchmark (a C load generator, peer servers and the harness that compares
them: ``python -m bench.echo_bench``)."""
