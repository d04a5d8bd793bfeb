"""python -m pipeline.benchmark: see :mod:`pipeline.benchmark.cli`."""

import sys

from pipeline.benchmark.cli import main

sys.exit(main())
