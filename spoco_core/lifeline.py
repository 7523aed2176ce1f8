"""Helper processes that end with their parent.

A process-pool child blocks on its task queue; when its parent is killed (SIGKILL, OOM killer) the
queue never closes (the child holds both ends), so the child would live on, re-parented, holding
its memory. ``exit_with_parent`` (a pool ``initializer``) starts a daemon thread that ends the
child once its parent process is gone.
"""

from __future__ import annotations

import os
import threading

POLL_S = 1.0


def exit_with_parent(parent_pid: int, poll_s: float = POLL_S) -> None:
    """In the child: exit as soon as ``parent_pid`` is no longer this process's parent."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            threading.Event().wait(poll_s)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
