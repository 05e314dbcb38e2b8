"""Benchmarks, outside pytest's default path; each prints ratios against its anchors."""
