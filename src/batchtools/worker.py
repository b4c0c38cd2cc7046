"""``python -m batchtools.worker JOB_COLLECTION_FILE``: run a job collection on a node (the node entry point)."""

import sys

from batchtools.node.node import main

if __name__ == "__main__":
    sys.exit(main())
