# The whole spectrum of a Hessian (density.enabled): SLQ density and Hutch++ trace, drawn with
# the sketched top-k eigenvalues marked.


rule spectral_density:
    input:
        trajectory=rules.train_model.output.trajectory,
        points=POINTS,
    output:
        density=f"{STEP}/density.json",
    log:
        f"{LOGS}/spectral_density/{WHICH}.log",
    benchmark:
        f"{BENCHMARKS}/spectral_density/{WHICH}.tsv"
    conda:
        "../../envs/hessketch.yaml"
    resources:
        mem_mb=mem_mb_density,
        hvp_batch_size=HVP_BATCH_SIZE,
        runtime=runtime_minutes(60),
    params:
        hessian=hessian_params(),
        density=config["density"],
    script:
        "../scripts/spectral_density.py"


rule plot_spectral_density:
    input:
        densities=files_of(densities_by_set()),
        spectra=files_of(tables_by_set("sketched", "spectrum", steps_vs_k())),
    output:
        pdf=f"{RESULTS}/figures/spectral_density.pdf",
        png=report(
            f"{RESULTS}/figures/spectral_density.png",
            caption="../report/spectral_density.rst",
            category="Spectrum",
        ),
    log:
        f"{LOGS}/plot_spectral_density.log",
    conda:
        "../../envs/hessketch.yaml"
    params:
        densities=densities_by_set(),
        spectra=tables_by_set("sketched", "spectrum", steps_vs_k()),
        style=config["plots"]["style"],
    script:
        "../scripts/plot_figure.py"
