"""Benchmarks of airflow-provider-omni: cost per recipient, cost of waiting, cost at DAG-parse time.

Every figure is a ratio against a baseline measured in the same run, on the same machine and the
same sandbox.  Run ``python -m bench.run`` (full) or ``python -m bench.run --quick`` (tiny sizes).
"""

from __future__ import annotations
