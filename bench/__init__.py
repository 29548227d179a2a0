"""retailflow benchmarks: `python -m bench` / `retailflow bench`. See bench/RESULTS.md."""
