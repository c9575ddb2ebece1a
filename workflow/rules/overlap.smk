rule compute_overlap:
    input:
        eigenpairs=f"{STEP}/method~{{method}}/eigenpairs.h5",
        trajectory=rules.train_model.output.trajectory,
        certificate=certificate_of,
        points=POINTS,
    output:
        overlap=f"{STEP}/method~{{method}}/overlap.tsv",
        distances=f"{STEP}/method~{{method}}/distances.tsv",
        spectrum=f"{STEP}/method~{{method}}/spectrum.tsv",
        summary=f"{STEP}/method~{{method}}/summary.json",
    log:
        f"{LOGS}/compute_overlap/{WHICH}/method~{{method}}.log",
    conda:
        "../../envs/hessketch.yaml"
    resources:
        mem_mb=mem_mb_overlap,
        runtime=runtime_minutes(20),
    params:
        report_k=config["overlap"]["report_k"],
        random_mask_seed=config["overlap"]["random_mask_seed"],
        random_masks=config["overlap"]["random_masks"],
        masks=config["overlap"]["masks"],
    script:
        "../scripts/compute_overlap.py"


rule compare_to_exact:
    input:
        sketched=files_at_exact_steps("sketched"),
        exact=files_at_exact_steps("exact"),
        trajectory=rules.train_model.output.trajectory,
    output:
        table=f"{SET}/comparison.tsv",
    log:
        f"{LOGS}/compare_to_exact/set~{{hset}}.log",
    conda:
        "../../envs/hessketch.yaml"
    params:
        sketched=lambda wildcards: outputs_at_exact_steps("sketched", wildcards.hset),
        exact=lambda wildcards: outputs_at_exact_steps("exact", wildcards.hset),
        top=10,
    script:
        "../scripts/compare_to_exact.py"


rule compute_stability:
    input:
        eigenpairs=lambda wildcards: sketched_eigenpairs(wildcards.hset).values(),
        trajectory=rules.train_model.output.trajectory,
    output:
        table=f"{SET}/stability.tsv",
    log:
        f"{LOGS}/compute_stability/set~{{hset}}.log",
    conda:
        "../../envs/hessketch.yaml"
    params:
        eigenpairs=lambda wildcards: sketched_eigenpairs(wildcards.hset),
        k=config["overlap"]["report_k"],
    script:
        "../scripts/compute_stability.py"
