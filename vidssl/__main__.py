"""``python -m vidssl`` (and ``torchrun -m vidssl``) run the command line."""

import sys

from vidssl.cli import main

sys.exit(main())
