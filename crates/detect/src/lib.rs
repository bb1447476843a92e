//! Streaming anomaly detectors for metric series and signal derivation (rates, ratios, quantiles).
