"""``python -m playground.bench``: see `playground.bench.speed`."""
import sys

from playground.bench.speed import main

sys.exit(main())
