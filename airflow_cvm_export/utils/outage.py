"""How a wait rides out a cloud outage: the one place deciding whether a failed check ends the wait.

A check of an export (DescribeImages, COS HEAD or listing) that fails even after the hook's own
retries does not end the wait when the failure is *transient* (network errors, throttling, 5xx,
answers that are not what the API promises: :func:`is_transient`): the wait keeps checking on its
schedule, logging each failed check, until the checks work again, the wait's ``timeout`` passes,
or the failures have gone on for longer than the wait's ``max_outage`` (seconds since the first
failed check in a row; default :data:`DEFAULT_MAX_OUTAGE`). Only then does the check's error fail
the try, and the task's retries reattach. A *permanent* failure (credentials, permissions, an
unknown image or bucket, a bad parameter: every error that is also an ``AirflowFailException``)
ends the wait at once, whatever ``max_outage``.

Every mode uses :class:`Outage`: the sensor's poke and reschedule modes and the operator's wait in a
worker call :meth:`Outage.tolerates` when a check raises, and the triggerer's poller does the same
for each waiting export. Airflow's ``silent_fail`` is the nearest convention: a sensor with
``silent_fail=True`` treats *any* exception of ``poke`` (permanent ones too) as "not done yet",
forever and only in poke and reschedule modes; ``max_outage`` covers transient failures only, is
bounded, and works the same in every mode, deferrable included.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

# One hour: longer than the cloud and network incidents a wait should not fail for (a regional API
# incident, a proxy or NAT gateway restarting, a maintenance window), short enough that checks that
# keep failing (an endpoint that has gone away, a firewall rule) surface within the hour rather than at
# the wait's timeout (seven days by default). Never past the wait's own timeout.
DEFAULT_MAX_OUTAGE = 3600.0
"""The default ``max_outage`` in seconds: one hour."""


def is_permanent(error: BaseException) -> bool:
    """True for an error no retry can fix: the provider's (credentials, permissions, not found, bad
    parameters) derive from ``AirflowFailException``."""
    from airflow_cvm_export.version_compat import AirflowFailException

    return isinstance(error, AirflowFailException)


def is_transient(error: BaseException) -> bool:
    """True when a failed check may work if tried again later.

    The provider's errors that are not :func:`is_permanent` (network, throttling, server errors,
    malformed answers) are transient. Errors from outside the provider are bugs, not outages: never
    transient (they fail the try, and the task's retries run).
    """
    from airflow_cvm_export.utils.errors import TencentCloudError

    return isinstance(error, TencentCloudError) and not is_permanent(error)


@dataclass(slots=True)
class Outage:
    """The failed checks in a row of one wait.

    :param max_outage: seconds the checks may keep failing transiently before the wait gives up.
    :param since: Unix time of the first failed check in a row, None while the checks work (kept
        across the reschedules of a sensor in reschedule mode, see the sensor).
    :param failures: failed checks in a row.
    """

    max_outage: float = DEFAULT_MAX_OUTAGE
    since: float | None = None
    failures: int = 0

    def tolerates(self, error: BaseException, now: float | None = None) -> bool:
        """Count a failed check; True when the wait should go on checking, False when ``error`` ends it."""
        if not is_transient(error):
            return False
        now = time.time() if now is None else now
        if self.since is None:
            self.since = now
        self.failures += 1
        return now - self.since < self.max_outage

    def passed(self) -> float | None:
        """A check worked: the outage is over. How long it lasted (seconds), or None if there was none."""
        if self.since is None:
            return None
        lasted, self.since, self.failures = time.time() - self.since, None, 0
        return lasted

    def describe(self, error: BaseException) -> str:
        """What a tolerated failed check logs: the error, how long the checks have failed, the tolerance."""
        lasted = time.time() - (self.since or time.time())
        return (
            f"check failed ({error}); failing for {lasted:.0f} s, {self.failures} check(s) in a row; "
            f"still waiting (max_outage {self.max_outage:g} s)"
        )

    def gave_up(self, error: BaseException) -> str:
        """Why the wait ends on ``error``: a permanent failure, or an outage longer than ``max_outage``."""
        if not is_transient(error) or self.since is None:
            return str(error)
        lasted = time.time() - self.since
        return f"{error} (checks failing for {lasted:.0f} s, longer than max_outage {self.max_outage:g} s)"
