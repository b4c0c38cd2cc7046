"""Telling someone how a run went: one message to a web hook (a JSON POST) or to a command.

``notify`` (of ``wait_for_jobs`` and ``batchtools watch --notify``) is one of

- a URL ``http(s)://...``: a JSON POST ``{"text": ..., "title": ..., "batchtools": {...}}``, which
  Slack's and Mattermost's incoming web hooks show as a message (``text``), and any other
  receiver can read (``batchtools``: the event, the registry, the counts);
- an ntfy topic, ``ntfy://HOST/TOPIC`` or ``https://ntfy.sh/TOPIC`` (``ntfy+http://HOST/TOPIC``
  for a server without TLS): a JSON POST to the server's root, as ntfy publishes JSON
  (``topic``, ``title``, ``message``, ``tags``);
- a command: a string (run by the shell) or a list (the program and its arguments), run with the
  message on its standard input and in the environment (``BATCHTOOLS_MESSAGE``,
  ``BATCHTOOLS_TITLE``, ``BATCHTOOLS_EVENT``, ``BATCHTOOLS_REGISTRY``);
- a dict ``{"to": one of these, "failures": N}``: also one message as soon as ``N`` jobs failed
  (an error, or expired), or a share of them (``0 < N < 1``), while the run goes on.

A message that cannot be delivered (the server refuses, the command fails, nothing answers within
:data:`TIMEOUT` seconds) is a warning, never an error: the run it reports on is what matters. After
the first failure the notifier gives up for the run (one warning, no retry at every turn of the wait).
Standard library only (``urllib``, ``subprocess``).

>>> n = Notifier.parse({"to": "https://hooks.example.org/T0/B0/x", "failures": 0.1})
>>> n.channel, n.crossed(failed=9, total=100), n.crossed(failed=10, total=100)
('url', False, True)
>>> Notifier.parse("ntfy://ntfy.example.org/runs").channel, Notifier.parse(["notify-send", "bt"]).channel
('ntfy', 'command')
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from ..._version import __version__

log = logging.getLogger("batchtools")
TIMEOUT = 20.0  # seconds a web hook or a command may take
NTFY_HOSTS = ("ntfy.sh",)  # hosts whose https URLs are ntfy topics (others: ntfy://HOST/TOPIC)
EXAMPLE = ("e.g. 'https://hooks.slack.com/services/...', 'ntfy://ntfy.sh/my-runs', 'mail -s batchtools me@example.org', "
           "or {'to': ..., 'failures': 5}")


@dataclass
class Notifier:
    """Where messages go (``target`` of ``channel`` url, ntfy or command) and the failure threshold."""

    target: Any
    channel: str
    failures: float | None = None
    told_failures: bool = False
    given_up: bool = False  # a message could not be delivered: none is tried again in this run

    @classmethod
    def parse(cls, notify: Any, arg: str = "notify") -> Notifier | None:
        """A notifier from what the user gave (None: none); TypeError/ValueError naming ``arg``."""
        if notify is None:
            return None
        failures = None
        if isinstance(notify, dict):
            unknown = set(notify) - {"to", "failures"}
            if unknown or "to" not in notify:
                raise ValueError(f"{arg}: a dict needs 'to' (and may have 'failures'), got keys {sorted(notify)}; "
                                 f"{EXAMPLE}")
            failures = notify.get("failures")
            if failures is not None and (isinstance(failures, bool) or not isinstance(failures, (int, float))
                                         or not failures > 0 or (failures >= 1 and failures != int(failures))):
                raise ValueError(f"{arg}: 'failures' must be a number of jobs (1, 2, ...) or a share of them "
                                 f"(between 0 and 1), got {failures!r}")
            notify = notify["to"]
        if isinstance(notify, (list, tuple)):
            if not notify or not all(isinstance(a, str) and a for a in notify):
                raise TypeError(f"{arg}: a command as a list must be non-empty strings, got {notify!r}")
            return cls(list(notify), "command", failures)
        if not isinstance(notify, str) or not notify.strip():
            raise TypeError(f"{arg}: a URL or a command, {EXAMPLE}; got {notify!r}")
        url = urllib.parse.urlsplit(notify.strip())
        if url.scheme in ("ntfy", "ntfy+http") or (url.scheme == "https" and url.hostname in NTFY_HOSTS):
            if not url.hostname or not url.path.strip("/"):
                raise ValueError(f"{arg}: an ntfy target names its server and topic, e.g. 'ntfy://ntfy.sh/my-runs', "
                                 f"got {notify!r}")
            return cls(notify.strip(), "ntfy", failures)
        if url.scheme in ("http", "https"):
            if not url.hostname:
                raise ValueError(f"{arg}: {notify!r} names no host")
            return cls(notify.strip(), "url", failures)
        return cls(notify, "command", failures)

    def crossed(self, failed: int, total: int) -> bool:
        """Whether ``failed`` of ``total`` jobs reach the failure threshold (not told yet)."""
        if self.failures is None or self.told_failures or self.given_up or not failed:
            return False
        return failed >= (self.failures * total if self.failures < 1 else self.failures)

    def send(self, event: str, title: str, text: str, details: dict[str, Any]) -> bool:
        """Deliver one message; False if it could not be (the first failure warns, and from then on
        nothing is sent: a dead target would cost every later turn of the wait its timeout)."""
        if self.given_up:
            return False
        try:
            if self.channel == "command":
                self._run(event, title, text, details)
            elif self.channel == "ntfy":
                url = urllib.parse.urlsplit(self.target)
                scheme = {"ntfy": "https", "ntfy+http": "http"}.get(url.scheme, url.scheme)
                root = urllib.parse.urlunsplit((scheme, url.netloc, "/", "", ""))
                tags = ["white_check_mark"] if event == "done" else ["warning"]
                _post(root, {"topic": url.path.strip("/"), "title": title, "message": text, "tags": tags})
            else:
                _post(self.target, {"text": f"*{title}*\n{text}", "title": title, "batchtools": {"event": event,
                                                                                                 **details}})
        except Exception as e:  # never a reason to fail the wait
            log.warning("could not send the notification (%s) to %s: %s; no more notifications go there in this run",
                        event, self.shown(), e)
            self.given_up = True
            return False
        if event == "failures":
            self.told_failures = True
        return True

    def shown(self) -> str:
        """The target for a message, without a secret in a URL's path or query."""
        if self.channel == "command":
            return repr(self.target if isinstance(self.target, str) else " ".join(self.target))
        url = urllib.parse.urlsplit(self.target)
        return f"{url.scheme}://{url.hostname}/..."

    def _run(self, event: str, title: str, text: str, details: dict[str, Any]) -> None:
        env = {**os.environ, "BATCHTOOLS_MESSAGE": text, "BATCHTOOLS_TITLE": title, "BATCHTOOLS_EVENT": event,
               "BATCHTOOLS_REGISTRY": str(details.get("registry", ""))}
        out = subprocess.run(self.target, shell=isinstance(self.target, str), input=f"{title}\n{text}\n", text=True,
                             env=env, capture_output=True, timeout=TIMEOUT)
        if out.returncode != 0:
            raise RuntimeError(f"exit status {out.returncode}: {(out.stderr or out.stdout).strip()[-300:]}")


def _post(url: str, payload: dict[str, Any]) -> None:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                 headers={"Content-Type": "application/json",
                                          "User-Agent": f"pybatchtools/{__version__}"})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            resp.read()
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"HTTP {e.code} {e.reason}") from None


def message(event: str, counts: dict[str, int], registry: str, elapsed: float | None = None,
            first_error: str | None = None) -> tuple[str, str]:
    """(title, text) of a message about a run: ``event`` is ``done`` (every job done), ``failed``
    (it ended, some jobs failed or expired), ``failures`` (the threshold was reached while it
    goes on), ``timeout`` or ``stopped`` (the wait ended first).

    >>> message("failed", {"total": 10, "done": 8, "error": 1, "expired": 1}, "/runs/reg", 75.0, "job 3: ValueError: x")
    ('batchtools: reg ended with failures', '10 jobs: 8 done, 1 error, 1 expired, in 1m15s. First error: job 3: ValueError: x. Registry: /runs/reg')
    """
    from .progress import format_duration

    name = os.path.basename(str(registry).rstrip("/")) or str(registry)
    title = {"done": f"batchtools: {name} finished", "failed": f"batchtools: {name} ended with failures",
             "failures": f"batchtools: {name} has failing jobs", "timeout": f"batchtools: stopped waiting for {name}",
             "stopped": f"batchtools: stopped waiting for {name}"}[event]
    parts = [f"{counts.get(k, 0)} {k}" for k in ("done", "error", "expired", "running", "queued") if counts.get(k)]
    text = f"{counts.get('total', 0)} jobs: " + (", ".join(parts) or "none finished")
    if elapsed is not None:
        text += f", in {format_duration(elapsed)}"
    if event in ("timeout", "stopped"):
        text += " (the jobs left go on)"
    if first_error:
        text += f". First error: {first_error}"
    return title, f"{text}. Registry: {registry}"
