"""Scenario file -> machine + drivers + workloads -> event loop -> result."""
