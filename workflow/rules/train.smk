rule train_model:
    input:
        data=data_files,
    output:
        trajectory=f"{RESULTS}/train/trajectory.h5",
        metrics=f"{RESULTS}/train/metrics.tsv",
    log:
        f"{LOGS}/train_model.log",
    benchmark:
        f"{BENCHMARKS}/train_model.tsv"
    conda:
        "../../envs/hessketch.yaml"
    resources:
        mem_mb=mem_mb_train,
        runtime=runtime_minutes(60),
    params:
        data=config["data"],
        model=config["model"],
        training=training_params(),
    script:
        "../scripts/train_model.py"


rule extract_hessian_set:
    input:
        data=data_files,
    output:
        points=POINTS,
    log:
        f"{LOGS}/extract_hessian_set/set~{{hset}}.log",
    conda:
        "../../envs/hessketch.yaml"
    resources:
        mem_mb=mem_mb_extract,
    params:
        data=config["data"],
        n=lambda wildcards: config["hessian"]["sets"][wildcards.hset],
    script:
        "../scripts/extract_hessian_set.py"
