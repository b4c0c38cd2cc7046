"""Cluster functions: one small file per backend against the contract in :mod:`batchtools.core.backend`;
shared chores in :mod:`.commands` and :mod:`.templates`. A backend never imports another backend."""
