"""Storage: the tables (`tables.py` and the `*_tables.py` beside it), the engine and sessions (`db.py`,
`sqlite_driver.py`), migrations (`migrate.py`), and the `Repository` (`repository.py`), the one writer,
which never commits and writes its queued rows in one `flush()` (`buffer.py`).
"""
