# `snakemake verify`: walk the provenance chain of the whole run (hessketch verify results/<run>).
# No output, so it runs whenever it is asked for, even when every file's times look current.


rule verify:
    input:
        rules.all.input,
    log:
        f"{LOGS}/verify.log",
    localrule: True
    conda:
        "../../envs/hessketch.yaml"
    script:
        "../scripts/verify_provenance.py"
