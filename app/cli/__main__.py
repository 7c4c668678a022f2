"""``python -m app.cli ...`` is the ``lee`` command."""

import sys

from app.cli.main import main

sys.exit(main())
