"""The user verbs: thin functions over :mod:`batchtools.core`, each validating its arguments first."""
