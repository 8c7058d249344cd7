"""The run-record stage: what a run is (spec), running it, and the record it leaves.

:mod:`~fetalbench.runs.spec` (requests and resolved specs), :mod:`~fetalbench.runs.execute` (one
run end to end), :mod:`~fetalbench.runs.metrics` (test metrics), :mod:`~fetalbench.runs.records`
(the record format: schema, hash, path, reader), :mod:`~fetalbench.runs.validation`,
:mod:`~fetalbench.runs.migration`, :mod:`~fetalbench.runs.checkpoints` and
:mod:`~fetalbench.runs.reproduce`.
"""
