"""The job record: the one package that reads and writes the jobs table.

JobRecords (`records`) is the one object that sends requests to the table; Celery's result
backend (`backend`), `app.control` (`control`) and `list_jobs` (`listing`) are built on it.
"""
