"""Adapter: rule reduce_krylov → hessketch.pipeline.waves.reduce_krylov."""

from hessketch.pipeline.common import run_stage
from hessketch.pipeline.waves import reduce_krylov

run_stage(
    snakemake.log[0],
    snakemake.threads,
    reduce_krylov,
    store_paths=list(snakemake.params.stores),
    receipt_paths=[list(r) for r in snakemake.params.receipts],
    k=snakemake.params.k,
    tolerance=snakemake.params.tolerance,
    eigenpairs_path=snakemake.output.eigenpairs,
    report_path=snakemake.output.report,
    certificate_path=snakemake.output.certificate,
    certificate_table_path=snakemake.output.certificate_table,
)
