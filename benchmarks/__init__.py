"""Scale benchmarks for fleet: `make bench` (`python -m benchmarks`).

`genrepo` builds (and caches) fleet repositories of any size, `scale` measures
one size in its own process, and `__main__` runs each size in a fresh
subprocess and prints the table of figures against the targets.
"""
