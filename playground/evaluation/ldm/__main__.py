"""``python -m playground.evaluation.ldm``: see `playground.evaluation.ldm.cli`."""
import sys

from playground.evaluation.ldm.cli import main

sys.exit(main())
