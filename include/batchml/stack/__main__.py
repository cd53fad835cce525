"""`python -m batchml.stack ...` (what bin/stack runs, and the moto-s3 service's `_moto-server` process)."""

import sys

from batchml.stack.cli import main

if __name__ == "__main__":
    sys.exit(main())
