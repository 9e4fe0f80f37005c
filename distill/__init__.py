"""Diffusion/flow distillation toolkit: the library (everything but networks and samplers)."""
