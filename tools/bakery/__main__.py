"""`python -m bakery` is the `bakery` command."""

import sys

from bakery.cli import main

sys.exit(main())
