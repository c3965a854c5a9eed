"""pytest plugin entry point of the conformance kit (fixtures are added by the kit)."""
