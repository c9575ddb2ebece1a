rule train_model:
    output:
        trajectory=f"{RESULTS}/train/trajectory.h5",
        metrics=f"{RESULTS}/train/metrics.tsv",
    log:
        f"{LOGS}/train_model.log",
    benchmark:
        f"{BENCHMARKS}/train_model.tsv"
    conda:
        "../../envs/hessketch.yaml"
    params:
        data=config["data"],
        model=config["model"],
        training=training_params(),
    script:
        "../scripts/train_model.py"
