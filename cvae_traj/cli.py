"""What the command-line entry points share: user errors become one line on stderr, not a traceback."""
from __future__ import annotations

import sys
from typing import Callable, TypeVar

from omegaconf.errors import MissingMandatoryValue

from cvae_traj.errors import CvaeTrajError, InputError

T = TypeVar("T")


def user_error(err: BaseException) -> CvaeTrajError | None:
    """The CvaeTrajError behind an exception, also when Hydra's instantiate wrapped it."""
    while err is not None:
        if isinstance(err, CvaeTrajError):
            return err
        if isinstance(err, MissingMandatoryValue):  # a required option left out on the command line
            return InputError(f"missing option {err.full_key}=... (give it on the command line)")
        err = err.__cause__ or err.__context__
    return None


def run_or_exit(fn: Callable[[], T]) -> T:
    """Run `fn`; on a user error print `error: <message>` on one line and exit with status 2."""
    try:
        return fn()
    except Exception as err:  # noqa: BLE001 - only user errors are caught, the rest re-raised
        cause = user_error(err)
        if cause is None:
            raise
        print(f"error: {' '.join(str(cause).split())}", file=sys.stderr)
        raise SystemExit(2) from None
