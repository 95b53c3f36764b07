"""The benchmark harness for the conference line (issue 5): run `python bench/run.py --help`."""
