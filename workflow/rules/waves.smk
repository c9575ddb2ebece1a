# Further waves of Hessian-vector products: the verification wave that certifies a one-pass
# sketch (sketch.passes = 1), and the block Krylov waves (sketch.passes > 1 or adaptive). Every
# wave is a Zarr store with V (written by the job that creates it) and HV (written by its
# shards). Krylov wave j >= 1 is planned first (plan_krylov_wave, a checkpoint): the plan decides
# whether it is measured at all, so an adaptive run's certificate decides the number of waves.


rule measure_wave_shard:
    input:
        trajectory=rules.train_model.output.trajectory,
        points=POINTS,
        store=WAVE_STORE,
    output:
        receipt=WAVE_RECEIPT,
    log:
        f"{LOGS}/measure_wave_shard/{WHICH}/{{wave}}/shard~{{scatteritem}}.log",
    benchmark:
        f"{BENCHMARKS}/measure_wave_shard/{WHICH}/{{wave}}/shard~{{scatteritem}}.tsv"
    conda:
        "../../envs/hessketch.yaml"
    resources:
        mem_mb=mem_mb_measure,
        hvp_batch_size=HVP_BATCH_SIZE,
        runtime=runtime_minutes(60),
    params:
        hessian=hessian_params(),
    script:
        "../scripts/measure_wave_shard.py"


if ONE_PASS:

    rule create_verification_wave:
        input:
            eigenpairs=f"{STEP}/method~sketched/eigenpairs.h5",
        output:
            store=directory(f"{STEP}/method~sketched/verification.zarr"),
        log:
            f"{LOGS}/create_verification_wave/{WHICH}.log",
        conda:
            "../../envs/hessketch.yaml"
        resources:
            mem_mb=mem_mb_wave,
            runtime=runtime_wave,
        params:
            pairs=config["certificate"]["pairs"],
            block_size=config["sketch"]["block_size"],
        script:
            "../scripts/create_verification_wave.py"

    rule certify_eigenpairs:
        input:
            store=rules.create_verification_wave.output.store,
            receipts=gather.measure(VERIFICATION_RECEIPTS),
            eigenpairs=f"{STEP}/method~sketched/eigenpairs.h5",
            report=f"{STEP}/method~sketched/report.json",
        output:
            certificate=f"{STEP}/method~sketched/certificate.json",
            certificate_table=f"{STEP}/method~sketched/certificate.tsv",
        log:
            f"{LOGS}/certify_eigenpairs/{WHICH}.log",
        conda:
            "../../envs/hessketch.yaml"
        resources:
            mem_mb=mem_mb_wave,
            runtime=runtime_wave,
        params:
            certificate=certificate_params(),
        script:
            "../scripts/certify_eigenpairs.py"

else:

    checkpoint plan_krylov_wave:
        input:
            stores=earlier_waves,
            receipts=receipts_of_earlier_waves,
            plans=earlier_plan_files,
        output:
            plan=f"{STEP}/krylov/plan~{{index}}.json",
            arrays=f"{STEP}/krylov/plan~{{index}}.npz",
        log:
            f"{LOGS}/plan_krylov_wave/{WHICH}/plan~{{index}}.log",
        benchmark:
            f"{BENCHMARKS}/plan_krylov_wave/{WHICH}/plan~{{index}}.tsv"
        conda:
            "../../envs/hessketch.yaml"
        resources:
            mem_mb=mem_mb_wave,
            runtime=runtime_wave,
        params:
            sketch=krylov_params(),
            certificate=plan_params(),
            stores=earlier_waves,
            receipts=receipts_by_earlier_wave,
            plans=earlier_plans,
        script:
            "../scripts/plan_krylov_wave.py"

    rule create_krylov_wave:
        input:
            trajectory=rules.train_model.output.trajectory,
            points=POINTS,
            stores=earlier_waves,
            receipts=receipts_of_earlier_waves,
            plan=plan_of_wave,
        output:
            store=directory(f"{STEP}/krylov/wave~{{index}}.zarr"),
        log:
            f"{LOGS}/create_krylov_wave/{WHICH}/wave~{{index}}.log",
        benchmark:
            f"{BENCHMARKS}/create_krylov_wave/{WHICH}/wave~{{index}}.tsv"
        conda:
            "../../envs/hessketch.yaml"
        resources:
            mem_mb=mem_mb_wave,
            runtime=runtime_wave,
        params:
            hessian=hessian_params(),
            sketch=krylov_params(),
            stores=earlier_waves,
            receipts=receipts_by_earlier_wave,
        script:
            "../scripts/create_krylov_wave.py"

    rule reduce_krylov:
        input:
            stores=all_waves,
            receipts=receipts_of_all_waves,
            plans=plan_files_of_reduction,
            trajectory=rules.train_model.output.trajectory,
            points=POINTS,
        output:
            eigenpairs=f"{STEP}/method~sketched/eigenpairs.h5",
            report=f"{STEP}/method~sketched/report.json",
            certificate=f"{STEP}/method~sketched/certificate.json",
            certificate_table=f"{STEP}/method~sketched/certificate.tsv",
        log:
            f"{LOGS}/reduce_krylov/{WHICH}.log",
        benchmark:
            f"{BENCHMARKS}/reduce_krylov/{WHICH}.tsv"
        conda:
            "../../envs/hessketch.yaml"
        resources:
            mem_mb=mem_mb_wave,
            runtime=runtime_wave,
        params:
            stores=all_waves,
            receipts=receipts_by_wave,
            plans=plans_of_reduction,
            k=config["sketch"]["k"],
            certificate=certificate_params(),
            hessian=hessian_params(),
        script:
            "../scripts/reduce_krylov.py"
