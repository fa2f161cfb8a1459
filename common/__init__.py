"""Project-wide pieces every layer may use: the user-error base class, the command-line runner,
locations (local path or fsspec URL), child processes that die with their parent, optional extras.

This package sits below ``etl/`` and imports nothing of the project.
"""
