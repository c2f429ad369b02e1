"""``python -m llama.cli COMMAND ...`` is the same as ``llama COMMAND ...``."""

import sys

from llama.cli import main

sys.exit(main())
