"""The workflow's stages as typed functions over files; each Snakemake rule calls one.

Nothing here imports Snakemake: every stage can be run and tested from plain Python.
"""
