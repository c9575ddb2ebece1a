rule exact_hessian:
    input:
        trajectory=rules.train_model.output.trajectory,
    output:
        eigenpairs=f"{STEP}/method~exact/eigenpairs.h5",
    log:
        f"{LOGS}/exact_hessian/step~{{step}}.log",
    benchmark:
        f"{BENCHMARKS}/exact_hessian/step~{{step}}.tsv"
    conda:
        "../../envs/hessketch.yaml"
    params:
        hessian=hessian_params(),
        k=config["exact"]["k"],
        max_dim=config["exact"]["max_dim"],
    script:
        "../scripts/exact_hessian.py"
