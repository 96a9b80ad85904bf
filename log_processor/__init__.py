"""The log processor: recent event windows from the store → Evidently → Prometheus gauges, reports, summaries."""
