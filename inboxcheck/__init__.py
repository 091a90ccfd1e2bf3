"""inboxcheck: preflight and troubleshooting for bring-your-own-credentials SMTP/IMAP inboxes.

Validate the account payload, check the sending domain's DNS, try real SMTP and IMAP logins, explain
every failure, and only then create the inbox on the sending platform::

    import inboxcheck

    report = await inboxcheck.check(payload, nameservers=["127.0.0.1:5353"])
    print(report.verdict, [f.code for f in report.findings()])

Everything public is listed in ``__all__``; modules with a leading underscore are private.
"""

from typing import TYPE_CHECKING, Any

from inboxcheck._version import __version__

if TYPE_CHECKING:
    from inboxcheck._api import (
        ApiExit,
        ApiKey,
        ApiOutcome,
        BulkItem,
        BulkOutcome,
        CreatedInbox,
        CreateFailed,
        CreateOutcome,
        InboxStatus,
        InsecureKeyFileWarning,
        PlatformClient,
        load_api_key,
    )
    from inboxcheck._batch import BatchLine, BatchSummary, run_batch
    from inboxcheck._check import CheckContext, CheckSpec, Outcome
    from inboxcheck._connect import ConnectResult, DailyLimitChoice, connect, connect_sync
    from inboxcheck._connect_batch import ConnectBatchSummary, connect_batch
    from inboxcheck._core import check, check_sync
    from inboxcheck._errors import (
        AccountError,
        ApiError,
        ApiKeyError,
        FieldProblem,
        InboxcheckError,
        OptionsError,
        PresetError,
    )
    from inboxcheck._input import load_account, parse_account
    from inboxcheck._limits import recommend_daily_limit
    from inboxcheck._models import (
        Account,
        AccountView,
        CheckResult,
        DailyLimitRecommendation,
        Finding,
        InboxType,
        PresetRef,
        RampStep,
        Report,
        Severity,
        Stage,
        Status,
        Verdict,
    )
    from inboxcheck._options import CheckOptions, Family, Nameserver
    from inboxcheck._presets import Preset, Presets, TlsMode, load_presets
    from inboxcheck._render import Format, JsonRenderer, TextRenderer
    from inboxcheck._schema import report_schema

# Names are imported on first use, so that `inboxcheck --version` and `import inboxcheck` stay fast:
# pydantic, dnspython, aiosmtplib and aioimaplib load only when something needs them.
_LAZY: dict[str, str] = {
    "ConnectBatchSummary": "inboxcheck._connect_batch",
    "connect_batch": "inboxcheck._connect_batch",
    "ApiExit": "inboxcheck._api",
    "ApiKey": "inboxcheck._api",
    "ApiOutcome": "inboxcheck._api",
    "BulkItem": "inboxcheck._api",
    "BulkOutcome": "inboxcheck._api",
    "CreateFailed": "inboxcheck._api",
    "CreateOutcome": "inboxcheck._api",
    "CreatedInbox": "inboxcheck._api",
    "InboxStatus": "inboxcheck._api",
    "InsecureKeyFileWarning": "inboxcheck._api",
    "PlatformClient": "inboxcheck._api",
    "load_api_key": "inboxcheck._api",
    "ConnectResult": "inboxcheck._connect",
    "DailyLimitChoice": "inboxcheck._connect",
    "connect": "inboxcheck._connect",
    "connect_sync": "inboxcheck._connect",
    "BatchLine": "inboxcheck._batch",
    "BatchSummary": "inboxcheck._batch",
    "run_batch": "inboxcheck._batch",
    "Account": "inboxcheck._models",
    "AccountError": "inboxcheck._errors",
    "AccountView": "inboxcheck._models",
    "ApiError": "inboxcheck._errors",
    "ApiKeyError": "inboxcheck._errors",
    "CheckContext": "inboxcheck._check",
    "CheckOptions": "inboxcheck._options",
    "CheckResult": "inboxcheck._models",
    "CheckSpec": "inboxcheck._check",
    "DailyLimitRecommendation": "inboxcheck._models",
    "Family": "inboxcheck._options",
    "FieldProblem": "inboxcheck._errors",
    "Finding": "inboxcheck._models",
    "Format": "inboxcheck._render",
    "InboxType": "inboxcheck._models",
    "InboxcheckError": "inboxcheck._errors",
    "JsonRenderer": "inboxcheck._render",
    "Nameserver": "inboxcheck._options",
    "OptionsError": "inboxcheck._errors",
    "Outcome": "inboxcheck._check",
    "Preset": "inboxcheck._presets",
    "PresetError": "inboxcheck._errors",
    "PresetRef": "inboxcheck._models",
    "Presets": "inboxcheck._presets",
    "RampStep": "inboxcheck._models",
    "Report": "inboxcheck._models",
    "Severity": "inboxcheck._models",
    "Stage": "inboxcheck._models",
    "Status": "inboxcheck._models",
    "TextRenderer": "inboxcheck._render",
    "TlsMode": "inboxcheck._presets",
    "Verdict": "inboxcheck._models",
    "check": "inboxcheck._core",
    "check_sync": "inboxcheck._core",
    "load_account": "inboxcheck._input",
    "load_presets": "inboxcheck._presets",
    "parse_account": "inboxcheck._input",
    "recommend_daily_limit": "inboxcheck._limits",
    "report_schema": "inboxcheck._schema",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'inboxcheck' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "Account",
    "AccountError",
    "AccountView",
    "ApiError",
    "ApiExit",
    "ApiKey",
    "ApiKeyError",
    "ApiOutcome",
    "BatchLine",
    "BatchSummary",
    "BulkItem",
    "BulkOutcome",
    "CheckContext",
    "CheckOptions",
    "CheckResult",
    "CheckSpec",
    "ConnectBatchSummary",
    "ConnectResult",
    "CreateFailed",
    "CreateOutcome",
    "CreatedInbox",
    "DailyLimitChoice",
    "DailyLimitRecommendation",
    "Family",
    "FieldProblem",
    "Finding",
    "Format",
    "InboxStatus",
    "InboxType",
    "InboxcheckError",
    "InsecureKeyFileWarning",
    "JsonRenderer",
    "Nameserver",
    "OptionsError",
    "Outcome",
    "PlatformClient",
    "Preset",
    "PresetError",
    "PresetRef",
    "Presets",
    "RampStep",
    "Report",
    "Severity",
    "Stage",
    "Status",
    "TextRenderer",
    "TlsMode",
    "Verdict",
    "__version__",
    "check",
    "check_sync",
    "connect",
    "connect_batch",
    "connect_sync",
    "load_account",
    "load_api_key",
    "load_presets",
    "parse_account",
    "recommend_daily_limit",
    "report_schema",
    "run_batch",
]
