"""Prefect orchestration: thin flows over etl/, features/ and training/ (the only package importing Prefect).

Deployments (served by ``python -m flows.serve``): ``ingest-fits/ingest-fits``,
``build-features/build-features`` and ``train-vae/train-vae``.
"""
