"""Job state: definitions per kind, ids, resources, the status table and how the nodes' updates are merged into it, attempts, retries, counts, accounting, recovery and cleanup."""
