"""Cluster functions: one small file per backend, all built on :mod:`.base`."""
