"""One error hierarchy, raised by the core and caught once in `cli` (exit 2 for bad input, 1 for RunError).

Every message says what is wrong *and* how to fix it, in one line, because it is
what a user reads at a terminal at 7 a.m. after an overnight job refused to start.
"""


class TunectlError(Exception):
    """Bad input: the user can fix it. The CLI prints it on one line and exits 2."""


class ConfigError(TunectlError):
    """A hyperparameter value or name that TrainConfig rejects (`--set`, `--params`)."""


class SpaceError(TunectlError):
    """A search-space file that cannot be used: syntax, unknown key, impossible range."""


class DataError(TunectlError):
    """A data set that cannot be loaded or split as asked."""


class StudyError(TunectlError):
    """A study that cannot be created, resumed or read (storage, mismatch, corruption)."""


class RunError(Exception):
    """A run that failed for a reason other than its input (ten trials failed in a row, every
    worker refused, a refit diverged). The CLI prints it on one line and exits 1."""


class StorageError(RunError):
    """The study's storage failed while a study ran (a full disk, a server gone): exit 1."""
