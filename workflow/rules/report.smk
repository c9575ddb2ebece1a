# The study at one glance: the landing page of `snakemake --report` (workflow/report/workflow.rst
# embeds it) and one result of the report. Drawn from tables and JSON files alone.


rule study_overview:
    input:
        sketched=files_of(summaries_by_set("sketched")),
        exact=files_of(summaries_by_set("exact")),
        reports=files_of(sketched_reports()),
        comparisons=list(comparisons_by_set().values()),
        metrics=f"{RESULTS}/train/metrics.tsv",
    output:
        overview=report(
            f"{RESULTS}/overview.html",
            caption="../report/overview.rst",
            category="Study",
        ),
    log:
        f"{LOGS}/study_overview.log",
    conda:
        "../../envs/hessketch.yaml"
    params:
        study=STUDY,
        sketched=summaries_by_set("sketched"),
        exact=summaries_by_set("exact"),
        reports=sketched_reports(),
        comparisons=comparisons_by_set(),
    script:
        "../scripts/study_overview.py"
