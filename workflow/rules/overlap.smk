rule compute_overlap:
    input:
        eigenpairs=f"{STEP}/method~{{method}}/eigenpairs.h5",
        trajectory=rules.train_model.output.trajectory,
    output:
        overlap=f"{STEP}/method~{{method}}/overlap.tsv",
        distances=f"{STEP}/method~{{method}}/distances.tsv",
        spectrum=f"{STEP}/method~{{method}}/spectrum.tsv",
        summary=f"{STEP}/method~{{method}}/summary.json",
    log:
        f"{LOGS}/compute_overlap/step~{{step}}/method~{{method}}.log",
    conda:
        "../../envs/hessketch.yaml"
    params:
        report_k=config["overlap"]["report_k"],
        random_mask_seed=config["overlap"]["random_mask_seed"],
    script:
        "../scripts/compute_overlap.py"
