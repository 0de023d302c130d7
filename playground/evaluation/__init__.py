"""Numbers about models: metrics, Fréchet distances, projections, the headline quality, reports."""
