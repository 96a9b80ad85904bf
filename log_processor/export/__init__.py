"""Exporting: an evaluation as Prometheus series, the summary document of ml-monitoring-*, and the
pages of /report."""
