# Data retrieval (data.url): each published file of the data set is fetched by its own job,
# verified by its published MD5 before it gets its final name, into resources/<dataset>/,
# which is then the data root (hessketch.sources); an archive (CIFAR) is unpacked by one more
# job, each member verified by its own published MD5, and deleted once unpacked. Local rules:
# compute nodes often have no internet, and the jobs only copy files. Without data.url none of
# this runs; a study that has no data at all (no data.url, no data.root, nothing at the
# default location) fails here, before any job, naming the files and where to place them.


from hessketch import sources
from hessketch.pipeline.config import data_source_problems

NO_DATA = data_source_problems(config)  # checked once, at start-up
if NO_DATA:
    raise WorkflowError("no data:\n  " + "\n  ".join(NO_DATA))

# None for a data set registered without a source (check_config refuses data.url for it)
DATA_SOURCE = sources.SOURCES.get(config["data"]["dataset"])
DATA_ROOT = str(sources.resource_root(config["data"]["dataset"]))
RETRIEVED = config["data"]["url"] is not None and DATA_SOURCE is not None


if RETRIEVED and DATA_SOURCE.names(archives=False):

    rule fetch_data:
        output:
            file=f"{DATA_ROOT}/{{name}}",
        log:
            f"{LOGS}/fetch_data/{{name}}.log",
        wildcard_constraints:
            name=DATA_SOURCE.pattern(archives=False),
        localrule: True
        conda:
            "../../envs/hessketch.yaml"
        params:
            dataset=config["data"]["dataset"],
            url=config["data"]["url"],
        script:
            "../scripts/fetch_data.py"


if RETRIEVED and DATA_SOURCE.names(archives=True):

    # needed only until unpacked: its members carry their own published MD5s
    rule fetch_archive:
        output:
            file=temp(f"{DATA_ROOT}/{{name}}"),
        log:
            f"{LOGS}/fetch_data/{{name}}.log",
        wildcard_constraints:
            name=DATA_SOURCE.pattern(archives=True),
        localrule: True
        conda:
            "../../envs/hessketch.yaml"
        params:
            dataset=config["data"]["dataset"],
            url=config["data"]["url"],
        script:
            "../scripts/fetch_data.py"

    rule unpack_data:
        input:
            archives=[f"{DATA_ROOT}/{name}" for name in DATA_SOURCE.names(archives=True)],
        output:
            [str(path) for path in DATA_SOURCE.unpacked(DATA_ROOT)],
        log:
            f"{LOGS}/unpack_data.log",
        localrule: True
        conda:
            "../../envs/hessketch.yaml"
        params:
            dataset=config["data"]["dataset"],
        script:
            "../scripts/unpack_data.py"
