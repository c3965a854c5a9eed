"""The simulated kernel: one module per kernel concept.  Knows nothing of scenarios or plugins."""
