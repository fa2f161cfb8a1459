"""Prefect orchestration: thin flows over etl/, features/ and training/ (the only package importing Prefect).

Deployments (served by ``python -m flows.serve``): ``ingest-fits/ingest-fits``,
``build-features/build-features``, ``train-vae/train-vae``, ``cross-match/cross-match`` and
``survey/survey`` (the whole archive in one resumable flow).
Needs the ``[flows]`` extra (prefect, prefect-dask).
"""
