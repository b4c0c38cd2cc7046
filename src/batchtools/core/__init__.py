"""The state layer: the registry's files and tables, and the services every verb builds on.

Nothing here imports from the layers above (``jobs``, ``backends``, ``api``, the package face).
"""
