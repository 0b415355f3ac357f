"""Pure domain logic: resonance analysis, persona catalog, routing and evaluation."""
