"""python -m pipeline.benchmark: the same work on several engines, checked equal, timed, tabled.

*What* is measured lives in :mod:`pipeline.benchmark.engines` (one module per engine, the same
function names in each); *how* it is measured lives in one place: :mod:`~.runner` starts a fresh
:mod:`~.worker` process per measurement and samples its memory, :mod:`~.check` compares every
answer with the pandas engine's outside the timed region, :mod:`~.results` appends rows to an
append-only CSV, and :mod:`~.report` turns them into a Markdown table and a plot.
"""
