"""Typer command definitions, one module per part of the product.

Each module's `register(app)` adds its commands; bodies import the heavy
implementation only when they run, so `clm --help` stays fast.
"""
