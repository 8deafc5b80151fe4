"""Observability: traces of finished boots, blame, the critical chain, plots, the planner."""
