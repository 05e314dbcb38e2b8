"""``python -m bench --scale N``: the index benchmark (bench/bench_index.py)."""

from bench.bench_index import main

main()
