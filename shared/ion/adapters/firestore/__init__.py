"""The Firestore backend (ION_BACKEND=gcp)."""
