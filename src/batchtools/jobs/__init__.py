"""What runs on a node: jobs, job collections, the executor and the worker entry point."""
