"""``python -m batchtools.helper CMD [ARGS]``: the node helper of the SSH backend."""

import sys

from batchtools.node.node_helper import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
