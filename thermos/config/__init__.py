"""Task configuration: the pystachio schema, helpers and loader/validator."""
