"""`amc-tf study`: many models x precisions converted, evaluated (sharded into image chunks)
and timed, on an embedded pool of worker processes or on a Ray cluster; results cached by
content so a re-run recomputes nothing and an interrupted study resumes.

discover (what MODELS name) -> plan (tasks and their content keys) -> run (the scheduler,
over pool or ray_backend; tasks are executed by work) -> report (study.json, tables, plot).
"""
