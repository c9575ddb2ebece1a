"""Adapter: rule verify → hessketch.pipeline.verify.verify_provenance (reads, never moves)."""

from hessketch.pipeline.common import run_stage
from hessketch.pipeline.verify import verify_provenance
from hessketch.provenance import run_root

run_dir = run_root(snakemake.input[0])  # results/<run>, above every input
run_stage(snakemake.log[0], snakemake.threads, verify_provenance, run_dir=run_dir)
