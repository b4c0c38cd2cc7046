"""``python -m batchtools.worker JOB_COLLECTION_FILE``: run a job collection on a node."""

import sys

from batchtools.jobs.worker import main

if __name__ == "__main__":
    sys.exit(main())
