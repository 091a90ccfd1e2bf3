"""The fleet's store: async functions over an injectable SQLAlchemy engine.

Every function takes the engine first, so ``fleet`` commands, ``inboxcheck serve`` and queue workers
share one store. Each write is one transaction: a report, its round, the account's new state, its
change and that change's webhook deliveries are recorded together or not at all.

The functions live by concern (``_store_accounts``: accounts and their passwords; ``_store_record``:
rounds and recording reports; ``_store_queries``: status, history, changes, prune, webhooks;
``_store_base``: what they share); callers use them from here.
"""

from __future__ import annotations

from inboxcheck.fleet._store_accounts import (
    AddResult as AddResult,
    add_accounts as add_accounts,
    list_accounts as list_accounts,
    load_accounts as load_accounts,
    refuse_other_keys as refuse_other_keys,
    rekey as rekey,
    remove_account as remove_account,
    save_refresh_token as save_refresh_token,
    set_paused as set_paused,
)
from inboxcheck.fleet._store_base import (
    DAY as DAY,
    UnknownAccountError as UnknownAccountError,
    iso as iso,
    pack as pack,
    status_entry as status_entry,
    unpack as unpack,
)
from inboxcheck.fleet._store_queries import (
    add_webhook as add_webhook,
    change_list as change_list,
    changes_document as changes_document,
    history as history,
    history_document as history_document,
    job_counts as job_counts,
    last_passing_report as last_passing_report,
    list_webhooks as list_webhooks,
    prune as prune,
    prune_jobs as prune_jobs,
    remove_webhook as remove_webhook,
    report_body as report_body,
    status as status,
    status_document as status_document,
)
from inboxcheck.fleet._store_record import (
    Recorded as Recorded,
    ReportEntry as ReportEntry,
    RoundPlan as RoundPlan,
    begin_round as begin_round,
    finish_round as finish_round,
    record_report as record_report,
    record_reports as record_reports,
    top_cause as top_cause,
)

__all__ = [
    "AddResult",
    "Recorded",
    "RoundPlan",
    "add_accounts",
    "begin_round",
    "change_list",
    "changes_document",
    "finish_round",
    "history",
    "history_document",
    "job_counts",
    "list_accounts",
    "load_accounts",
    "prune",
    "prune_jobs",
    "record_report",
    "record_reports",
    "refuse_other_keys",
    "rekey",
    "remove_account",
    "save_refresh_token",
    "set_paused",
    "status",
    "status_document",
]
