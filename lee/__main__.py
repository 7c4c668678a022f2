import sys

from lee.cli import main

sys.exit(main())
