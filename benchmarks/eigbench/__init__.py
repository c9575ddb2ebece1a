"""The eigensolver benchmark suite behind ``benchmarks/bench_eigensolvers.py``.

``problems`` (the networks, their training and Hessian operators), ``methods`` (hessketch and
its peers, each a function of one prepared environment), ``child`` (one method in one fresh
process: timing, HVPs, peak RSS), ``scoring`` (errors against the reference) and ``report``
(TSV and markdown). See ``benchmarks/README.md``.
"""
