"""Builders of the example models; examples/make_models.py is the entry point."""
