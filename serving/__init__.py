"""Online serving: synthetic data, model, Feast features, the Flask API and its event logging."""
