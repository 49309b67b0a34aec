"""Benchmarks of the session server: figures printed against a floor measured in the same run.

`python -m bench` (or `make bench`) runs every measurement; `python -m bench --quick` does
fewer runs as a smoke check. Each figure is a ratio against a floor taken on the same
machine at the same time (raw Selenium, a bare gunicorn app), because absolute numbers on
a shared machine are noise. Results go to `bench/results/<UTC time>.json` and `latest.json`.
"""
