"""User-facing errors: the command-line entry points print these as one line, without a traceback."""


class CvaeTrajError(Exception):
    """Base class of every error caused by the user's input rather than by a bug."""


class InputError(CvaeTrajError, ValueError):
    """A track table, file or setting that cannot be used as given."""


class CheckpointError(CvaeTrajError):
    """A checkpoint that is missing, unreadable or built for something else."""


class TrainingDivergedError(CvaeTrajError):
    """The loss became NaN or infinite: training stops rather than save a broken model."""
