"""The pace per provider holds across all workers together: proved by the server's own count.

A counting peer (an SMTP and an IMAP server on loopback) holds every login a few hundred
milliseconds and records when each began and ended. Three real ``inboxcheck fleet worker``
processes, each allowed twice the checks at once that the pace allows, check accounts on it; ``--pace``
makes it a provider of two logins at once and six a minute. The peer must never see more than
two logins at once, nor more than six begun within any 60 s, and every account must end the round
with exactly one report. With the pace kept per process (each worker its own two and six, as
before), the peer sees more than two at once and all eight within the minute.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.fleet.test_queue import (  # fixtures
    _env,
    _fleet,
    _round_state,
    _rows,
    _wait_for,
    _Workers,
    queue_db as queue_db,
    workers_dir as workers_dir,
)
from tests.peers import LoginCounter, Peer, PeerCerts, serving_in_thread
from tests.scenarios import ImapScript, SmtpScript, base_payload

ACCOUNTS = 8
PER_MINUTE = 6
AT_ONCE = 2
WORKERS = 3
# Each worker alone would check twice the pace's "at once"; two of them all the accounts.
CONCURRENCY = 2 * AT_ONCE


@pytest.mark.slow
def test_the_pace_holds_across_all_workers_together_as_the_server_counts_logins(
    queue_db: str, tmp_path: Path, workers_dir: Path
) -> None:
    certs = PeerCerts()
    ca_file = tmp_path / "ca.pem"
    certs.ca.cert_pem.write_to_path(str(ca_file))
    counter = LoginCounter(hold=0.4)
    smtp = counter.wrap("smtp", SmtpScript(tls=certs.server_context()))
    imap = counter.wrap("imap", ImapScript(tls=certs.server_context(), implicit=True))
    env = _env(queue_db)
    with (
        serving_in_thread(lambda: Peer(smtp)) as smtp_server,
        serving_in_thread(lambda: Peer(imap, tls=certs.server_context())) as imap_server,
    ):
        user = "u{}@peer.test".format
        accounts = [
            base_payload(
                email_address=user(n),
                smtp_username=user(n),
                imap_username=user(n),
                smtp_port=smtp_server.port,
                imap_port=imap_server.port,
            )
            for n in range(ACCOUNTS)
        ]
        source = tmp_path / "in.jsonl"
        source.write_text("".join(json.dumps(a) + "\n" for a in accounts), encoding="utf-8")
        _fleet(["add", str(source)], env)
        args = [
            *("--concurrency", str(CONCURRENCY), "--pace", f"127.0.0.1={PER_MINUTE}/{AT_ONCE}"),
            *("--only", "smtp", "--only", "imap", "--ca-file", str(ca_file), "--timeout", "10", "-q"),
        ]
        workers = _Workers(args, env, workers_dir, queue_db)
        try:
            for _ in range(WORKERS):
                workers.start()
            # Queued once every worker listens: no worker can take more than CONCURRENCY of them.
            _fleet(["schedule"], env)
            _wait_for("finished", lambda: _round_state(queue_db)[1][-1][2] is not None, workers, timeout=300)
            [(checked_by,)] = _rows(
                queue_db,
                "SELECT count(DISTINCT worker_id) FROM procrastinate_jobs WHERE status = 'succeeded'",
            )
            running = list(workers.running)
            for proc in running:
                workers.stop(proc, signal.SIGTERM)
            for proc in running:
                assert proc.wait(timeout=60) == 0, workers.logs()
        finally:
            workers.close()
    shown: dict[str, Any] = {
        protocol: {
            "logins": len(counter.seen(protocol)),
            "at once": counter.most_at_once(protocol),
            "in 60 s": counter.busiest_window(protocol),
        }
        for protocol in ("smtp", "imap")
    }
    print(shown, f"checked by {checked_by} workers")
    # The logins came from more than one worker: the limits held between processes.
    assert checked_by >= 2, shown
    for protocol in ("smtp", "imap"):
        # Every account logged in (the pace let each through in the end) ...
        assert len(counter.seen(protocol)) >= ACCOUNTS, shown
        # ... and the server never saw more than the pace allows, whichever worker logged in.
        assert counter.most_at_once(protocol) <= AT_ONCE, shown
        assert counter.busiest_window(protocol, 60.0) <= PER_MINUTE, shown
    per, rounds = _round_state(queue_db)
    assert len(rounds) == 1 and len(per) == ACCOUNTS and set(per.values()) == {1}, per
    assert "Traceback" not in workers.logs(), workers.logs()[-3000:]
