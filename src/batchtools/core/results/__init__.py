"""Results: the result store seam (a folder of files, packs of small results, SQLite)."""
