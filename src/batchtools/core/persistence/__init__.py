"""The registry folder on disk: where each file lives, atomic writes, transactions, the writeable-session lease, the tables' pickles and how user code is serialised."""
