"""ION Mentoring domain package: resonance analysis, persona routing and chat orchestration."""

__version__ = "0.1.0"
