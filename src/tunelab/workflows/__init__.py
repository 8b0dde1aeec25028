"""Workflows: what a user asks tunelab to do, built from the layers below (train, stages,
per-task adapters, using finished runs, generation, suites, compare, combine, demo).

Each module here is what one group of commands calls; :mod:`tunelab.api` re-exports them."""
