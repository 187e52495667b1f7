"""Every exception seqsbi raises on purpose, in one module with no imports of its own.

Catch :class:`SeqsbiError` for any of them. Each also derives from the built-in it refines
(``ValueError`` for bad input, ``RuntimeError`` for an injected failure), so code written against
the built-ins keeps working.
"""


class SeqsbiError(Exception):
    """Base class of seqsbi's exceptions; the message says what to change."""


class ConfigError(SeqsbiError, ValueError):
    """Invalid configuration, observation sheet or catalogue; the message names the key or row."""


class LibraryError(SeqsbiError, ValueError):
    """A model library file that is missing, malformed or cannot be rebuilt; the message names it."""


class ArtifactError(SeqsbiError, ValueError):
    """A file the workflow wrote that cannot be read back (truncated, damaged); the message names it and how
    to remake it."""


class InjectedFailure(SeqsbiError, RuntimeError):
    """Raised on purpose for rounds listed in $SEQSBI_FAIL_ROUND (tests of failure handling)."""


class SimulationError(SeqsbiError, ValueError):
    """A round's simulations that its engine cannot train on (non-finite x); the message gives the options."""


class SamplingError(SeqsbiError, RuntimeError):
    """A sampling step that cannot finish within its bound; the message names the setting to change."""


class ReferenceNotConverged(SamplingError):
    """A reference (exact-likelihood) run whose nested sampler stopped before its convergence criteria
    (exploration finished, effective sample size); the message gives the numbers and the setting to raise."""
