"""`python -m streamchar.cli ...` (torchrun uses it): the `streamchar` command."""

import sys

from streamchar.cli import main

sys.exit(main())
