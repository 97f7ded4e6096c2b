"""Benchmark suites and sweeps: ``python -m simtoreal.bench SUITE``.

- :mod:`simtoreal.bench.suites`: the suites, declared as data (trials, budgets, search spaces);
- :mod:`simtoreal.bench.trials`: one function per kind of trial, over the library's public APIs;
- :mod:`simtoreal.bench.runner`: the local process-pool and Ray Tune backends;
- :mod:`simtoreal.bench.results`: results.jsonl (atomic appends, strict reads, resume);
- :mod:`simtoreal.bench.report`: report.md and the plots, from results.jsonl alone;
- :mod:`simtoreal.bench.machine`: machine, versions and commit, for every record.

docs/bench.md says how to run a suite, add one, resume a sweep and read the report.
"""
