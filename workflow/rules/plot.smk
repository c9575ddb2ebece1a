rule plot_overlap_over_training:
    input:
        sketched=files_of(summaries_by_set("sketched")),
        exact=files_of(summaries_by_set("exact")),
    output:
        pdf=f"{RESULTS}/figures/overlap_over_training.pdf",
        png=report(
            f"{RESULTS}/figures/overlap_over_training.png",
            caption="../report/overlap_over_training.rst",
            category="Overlap",
        ),
    log:
        f"{LOGS}/plot_overlap_over_training.log",
    conda:
        "../../envs/hessketch.yaml"
    params:
        sketched=summaries_by_set("sketched"),
        exact=summaries_by_set("exact"),
        style=config["plots"]["style"],
    script:
        "../scripts/plot_figure.py"


rule plot_overlap_vs_k:
    input:
        sketched=files_of(tables_by_set("sketched", "overlap", steps_vs_k())),
        exact=files_of(tables_by_set("exact", "overlap", steps_vs_k())),
    output:
        pdf=f"{RESULTS}/figures/overlap_vs_k.pdf",
        png=report(
            f"{RESULTS}/figures/overlap_vs_k.png",
            caption="../report/overlap_vs_k.rst",
            category="Overlap",
        ),
    log:
        f"{LOGS}/plot_overlap_vs_k.log",
    conda:
        "../../envs/hessketch.yaml"
    params:
        sketched=tables_by_set("sketched", "overlap", steps_vs_k()),
        exact=tables_by_set("exact", "overlap", steps_vs_k()),
        style=config["plots"]["style"],
    script:
        "../scripts/plot_figure.py"


rule plot_spectra:
    input:
        sketched=files_of(tables_by_set("sketched", "spectrum", spectrum_steps())),
        exact=files_of(tables_by_set("exact", "spectrum", spectrum_steps())),
    output:
        pdf=f"{RESULTS}/figures/spectra.pdf",
        png=report(
            f"{RESULTS}/figures/spectra.png",
            caption="../report/spectra.rst",
            category="Spectrum",
        ),
    log:
        f"{LOGS}/plot_spectra.log",
    conda:
        "../../envs/hessketch.yaml"
    params:
        sketched=tables_by_set("sketched", "spectrum", spectrum_steps()),
        exact=tables_by_set("exact", "spectrum", spectrum_steps()),
        style=config["plots"]["style"],
    script:
        "../scripts/plot_figure.py"


rule plot_training_curves:
    input:
        metrics=rules.train_model.output.metrics,
    output:
        pdf=f"{RESULTS}/figures/training_curves.pdf",
        png=report(
            f"{RESULTS}/figures/training_curves.png",
            caption="../report/training_curves.rst",
            category="Training",
        ),
    log:
        f"{LOGS}/plot_training_curves.log",
    conda:
        "../../envs/hessketch.yaml"
    params:
        style=config["plots"]["style"],
    script:
        "../scripts/plot_figure.py"
