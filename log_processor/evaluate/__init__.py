"""Evaluating: a window against its monitor's reference with Evidently (drift, quality per task,
stability, estimated quality) into one plain Evaluation. Pure but for loading the reference."""
