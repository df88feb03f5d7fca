"""Graceful stop on SIGTERM (what cloud VMs and schedulers send before they take a machine away)
and on SIGINT (Ctrl-C): both save the exact step and exit 0, and the same command resumes.

The handler only sets a flag. The outer loop checks it between compiled calls (at most
`steps_per_loop` steps apart), saves a checkpoint of the exact step and returns; the next start
resumes there. A second signal while saving is ignored rather than cutting the save short.
An ignored SIGINT stays ignored: a job started in the background of a shell (`cmd &`, nohup)
must not stop on a Ctrl-C meant for the foreground.
"""

from __future__ import annotations

import logging
import signal
import threading


class StopRequest:
  """Installs SIGTERM and SIGINT handlers for its lifetime (a context manager); `requested` is
  the flag."""

  def __init__(self, signals=(signal.SIGTERM, signal.SIGINT)):
    self._signals = signals
    self._previous = {}
    self._event = threading.Event()
    self.signal_name = None

  @property
  def requested(self) -> bool:
    return self._event.is_set()

  def _handle(self, signum, frame):
    del frame
    if not self._event.is_set():
      self.signal_name = signal.Signals(signum).name
      logging.warning("%s received: saving a checkpoint and stopping", self.signal_name)
    self._event.set()

  def __enter__(self):
    # Signal handlers can only be installed from the main thread; elsewhere (a library caller's
    # worker thread) the default behaviour stays.
    if threading.current_thread() is threading.main_thread():
      for s in self._signals:
        if s == signal.SIGINT and signal.getsignal(s) == signal.SIG_IGN:
          continue
        self._previous[s] = signal.signal(s, self._handle)
    return self

  def __exit__(self, *exc):
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    self._previous.clear()
