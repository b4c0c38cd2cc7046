"""What runs on a node (no pandas): the session around jobs, the runners of each kind, one job,
a chunk, a pool worker, and the processes that host them (node entry, fork server, Socket process,
SSH agent)."""
