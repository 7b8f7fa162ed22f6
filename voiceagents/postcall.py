"""Post-call work queued in batches: one Celery message for the calls a process ended together.

Every call's end queues ``finalize_call`` (status reconciliation, cost, the provider's report,
the carrier's record, the customer webhook). With a broker, Celery's ``delay`` costs about 1 ms
of CPU in the server (building and publishing the message: kombu's Python, a Redis command),
one of the largest parts of a short call's set-up (docs/benchmarks.md). ``queue_finalize`` puts
the call on a list instead; a thread of the process sends what gathered during ``WINDOW_S`` as one
``finalize_calls`` task (at most ``MAX_BATCH`` calls a message), which a worker runs call by call.

Nothing is lost on a clean exit: what is still on the list is sent at interpreter exit
(``atexit``, after the server drained). A process killed within ``WINDOW_S`` of a call's end
loses that call's post-call work, as a broker outage does today: its row is already final.

With eager Celery (the demo: ``CELERY_TASK_ALWAYS_EAGER``) nothing is batched: the task runs in
the calling thread, as before.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time

logger = logging.getLogger(__name__)

#: How long the list gathers ended calls before they are sent as one task, in seconds.
WINDOW_S = 0.1
#: Most calls in one task message.
MAX_BATCH = 100


class FinalizeQueue:
    """The process's list of ended calls waiting to be sent, and the thread that sends them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, call_id) -> None:
        with self._lock:
            self._pending.append(str(call_id))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="voiceagents-finalize-queue", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def flush(self) -> None:
        """Send what is on the list now."""
        with self._lock:
            batch, self._pending = self._pending, []
        for start in range(0, len(batch), MAX_BATCH):
            _send(batch[start : start + MAX_BATCH])

    def _run(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(WINDOW_S)
            self._wake.clear()  # a call added from here on wakes the next round
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the thread must outlive one bad round
                logger.exception("sending the ended calls' post-call work failed")


def _send(call_ids: list[str]) -> None:
    from .tasks import finalize_calls

    try:
        finalize_calls.delay(call_ids)
    except Exception:
        # The broker being down must not lose the calls' rows (already final);
        # reconcile_stale_calls and the carriers' status callbacks still close what is open.
        logger.exception(
            "cannot queue the post-call work (finalize_calls) of %d call(s): %s",
            len(call_ids),
            ", ".join(call_ids),
        )


_queue = FinalizeQueue()
atexit.register(_queue.flush)


def queue_finalize(call_id) -> None:
    """Queue ``finalize_call`` for ``call_id``: batched with a broker, at once when eager."""
    from .tasks import finalize_call

    if finalize_call.app.conf.task_always_eager:
        try:
            finalize_call.delay(str(call_id))
        except Exception:
            logger.exception("call %s: finalize_call failed", call_id)
        return
    _queue.add(call_id)
