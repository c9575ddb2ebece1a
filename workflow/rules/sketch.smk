# The one-pass sketch (sketch.passes = 1): create the store, measure it in shards, reduce it.


if ONE_PASS:

    rule create_sketch_store:
        input:
            trajectory=rules.train_model.output.trajectory,
            points=POINTS,
        output:
            store=directory(f"{STEP}/sketch.zarr"),
        log:
            f"{LOGS}/create_sketch_store/{WHICH}.log",
        # on the submitting host: it only writes the store's metadata (the rule's own flag, not
        # a `localrules:` list, so that it survives `use rule * from hessketch as hessketch_*`)
        localrule: True
        conda:
            "../../envs/hessketch.yaml"
        params:
            hessian=hessian_params(),
            sketch=sketch_params(),
        script:
            "../scripts/create_sketch_store.py"

    rule measure_sketch_shard:
        input:
            trajectory=rules.train_model.output.trajectory,
            points=POINTS,
            store=rules.create_sketch_store.output.store,
        output:
            receipt=RECEIPT,
        log:
            f"{LOGS}/measure_sketch_shard/{WHICH}/shard~{{scatteritem}}.log",
        benchmark:
            f"{BENCHMARKS}/measure_sketch_shard/{WHICH}/shard~{{scatteritem}}.tsv"
        conda:
            "../../envs/hessketch.yaml"
        resources:
            mem_mb=mem_mb_measure,
            hvp_batch_size=HVP_BATCH_SIZE,
            runtime=runtime_minutes(60),
        params:
            hessian=hessian_params(),
        script:
            "../scripts/measure_sketch_shard.py"

    rule reduce_sketch:
        input:
            store=rules.create_sketch_store.output.store,
            receipts=gather.measure(RECEIPTS_OF_STEP),
            trajectory=rules.train_model.output.trajectory,
            points=POINTS,
        output:
            eigenpairs=f"{STEP}/method~sketched/eigenpairs.h5",
            report=f"{STEP}/method~sketched/report.json",
        log:
            f"{LOGS}/reduce_sketch/{WHICH}.log",
        benchmark:
            f"{BENCHMARKS}/reduce_sketch/{WHICH}.tsv"
        conda:
            "../../envs/hessketch.yaml"
        resources:
            mem_mb=mem_mb_reduce,
            runtime=runtime_reduce,
        params:
            hessian=hessian_params(),
        script:
            "../scripts/reduce_sketch.py"
