"""The conformance kit third-party drivers run (a pytest plugin installed with the core)."""
