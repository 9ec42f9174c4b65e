"""Tooling on top of the engine: the `paystream` command line, the local runner, topic
administration, the traffic generator, the chaos supervisor and the run report.

The only layer that may import everything (the engine, `verify/`, `bench/`, `deploy/`);
nothing in the engine or its applications imports it.
"""
