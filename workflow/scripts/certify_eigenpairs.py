"""Adapter: rule certify_eigenpairs → hessketch.pipeline.waves.certify_eigenpairs."""

from hessketch.pipeline.common import run_job
from hessketch.pipeline.waves import certify_eigenpairs

certificate = snakemake.params.certificate
run_job(
    snakemake,
    certify_eigenpairs,
    store_path=snakemake.input.store,
    receipt_paths=list(snakemake.input.receipts),
    eigenpairs_path=snakemake.input.eigenpairs,
    report_path=snakemake.input.report,
    tolerance=certificate["tolerance"],
    space_tolerance=certificate["space_tolerance"],
    product_error=certificate["product_error"],
    certificate_path=snakemake.output.certificate,
    certificate_table_path=snakemake.output.certificate_table,
)
