# seqsbi: multi-round simulation-based inference as a Snakemake DAG.
# Wiring only; see workflow/rules/*.smk for the stages and config/README.md for the settings.
from snakemake.utils import min_version

min_version("9.0")


# --configfile FILE replaces the default config instead of merging into it, so a run defined only
# in config/config.yaml never sneaks into another config's DAG.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
# Before rule all: it defines catalogue_targets() (none without amortized/catalogues config blocks).
include: "workflow/rules/catalogue_common.smk"


rule all:
    default_target: True
    input:
        final_targets(),
        catalogue_targets(),


include: "workflow/rules/rounds.smk"
include: "workflow/rules/reference.smk"
include: "workflow/rules/plots.smk"
include: "workflow/rules/diagnostics.smk"
include: "workflow/rules/galaxy.smk"
include: "workflow/rules/catalogue.smk"
