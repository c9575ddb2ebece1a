rule compute_overlap:
    input:
        eigenpairs=f"{STEP}/method~{{method}}/eigenpairs.h5",
        trajectory=rules.train_model.output.trajectory,
        certificate=certificate_of,
    output:
        overlap=f"{STEP}/method~{{method}}/overlap.tsv",
        distances=f"{STEP}/method~{{method}}/distances.tsv",
        spectrum=f"{STEP}/method~{{method}}/spectrum.tsv",
        summary=f"{STEP}/method~{{method}}/summary.json",
    log:
        f"{LOGS}/compute_overlap/step~{{step}}/method~{{method}}.log",
    conda:
        "../../envs/hessketch.yaml"
    resources:
        mem_mb=mem_mb_overlap,
        runtime=runtime_minutes(20),
    params:
        report_k=config["overlap"]["report_k"],
        random_mask_seed=config["overlap"]["random_mask_seed"],
    script:
        "../scripts/compute_overlap.py"


rule compare_to_exact:
    input:
        sketched=[p for s in outputs_at_exact_steps("sketched").values() for p in s.values()],
        exact=[p for s in outputs_at_exact_steps("exact").values() for p in s.values()],
        trajectory=rules.train_model.output.trajectory,
    output:
        table=f"{RESULTS}/comparison.tsv",
    log:
        f"{LOGS}/compare_to_exact.log",
    conda:
        "../../envs/hessketch.yaml"
    params:
        sketched=outputs_at_exact_steps("sketched"),
        exact=outputs_at_exact_steps("exact"),
        top=10,
    script:
        "../scripts/compare_to_exact.py"


rule compute_stability:
    input:
        eigenpairs=sketched_eigenpairs().values(),
        trajectory=rules.train_model.output.trajectory,
    output:
        table=f"{RESULTS}/stability.tsv",
    log:
        f"{LOGS}/compute_stability.log",
    conda:
        "../../envs/hessketch.yaml"
    params:
        eigenpairs=sketched_eigenpairs(),
        k=config["overlap"]["report_k"],
    script:
        "../scripts/compute_stability.py"
