"""seqsbi: multi-round simulation-based inference as a Snakemake workflow.

Modules: ``config`` (validated config), ``priors``, ``simulators`` (numpy only), ``seeds``,
``artifacts`` (atomic round I/O), ``engines`` and ``rounds`` (the only ones that touch sbi/torch),
``plots``. Heavy imports happen inside the modules that need them, never here.
"""

__version__ = "0.1.0"
