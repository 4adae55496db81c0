"""Worked examples the example DAGs import: :mod:`airflow_cvm_export.examples.planning`."""
