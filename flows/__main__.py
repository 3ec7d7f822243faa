"""`python -m flows`: the `montrg` command line (flows.ops.cli)."""

import sys

from flows.ops.cli import main

if __name__ == "__main__":
    sys.exit(main())
