"""The any-to-any model (issue 20)."""
