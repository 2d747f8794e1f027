"""Benchmarks: every figure against a baseline measured in the same run on the same machine.

``python -m bench`` runs them all (``python -m bench 1 3`` runs some), prints a table and
writes ``bench/RESULTS.md``. ``make bench`` runs it with ``REDIS_URL`` pointing at a
reachable Redis; the benchmarks use database 9 of it (``BENCH_REDIS_DB``), flushed before and
after. Real parts only: a real Redis, real Celery worker processes, real HTTP to a CRM
simulator running in its own process, gunicorn for the webhook.
"""
