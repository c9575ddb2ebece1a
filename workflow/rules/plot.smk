rule plot_overlap_over_training:
    input:
        sketched=summaries_of("sketched").values(),
        exact=summaries_of("exact").values(),
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
        sketched=summaries_of("sketched"),
        exact=summaries_of("exact"),
        style=config["plots"]["style"],
    script:
        "../scripts/plot_figure.py"


rule plot_overlap_vs_k:
    input:
        sketched=tables_of("sketched", "overlap", steps_vs_k()).values(),
        exact=tables_of("exact", "overlap", steps_vs_k()).values(),
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
        sketched=tables_of("sketched", "overlap", steps_vs_k()),
        exact=tables_of("exact", "overlap", steps_vs_k()),
        style=config["plots"]["style"],
    script:
        "../scripts/plot_figure.py"


rule plot_spectra:
    input:
        sketched=tables_of("sketched", "spectrum", spectrum_steps()).values(),
        exact=tables_of("exact", "spectrum", spectrum_steps()).values(),
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
        sketched=tables_of("sketched", "spectrum", spectrum_steps()),
        exact=tables_of("exact", "spectrum", spectrum_steps()),
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
