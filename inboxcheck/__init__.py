"""inboxcheck: preflight and troubleshooting for bring-your-own-credentials SMTP/IMAP inboxes.

Validate the account payload, check the sending domain's DNS, try real SMTP and IMAP logins, explain
every failure, and only then create the inbox on the sending platform::

    import inboxcheck

    report = await inboxcheck.check(payload, nameservers=["127.0.0.1:5353"])
    print(report.verdict, [f.code for f in report.findings()])

Everything public is listed in ``__all__``; modules with a leading underscore are private.
"""

from typing import TYPE_CHECKING, Any, Final

from inboxcheck._version import __version__ as __version__

# The public names and the private module each lives in: the one table. Names are imported on first
# use, so that `inboxcheck --version` and `import inboxcheck` stay fast: pydantic, dnspython,
# aiosmtplib and aioimaplib load only when something needs them. The block under TYPE_CHECKING
# mirrors it for type checkers (a test keeps the two equal), and tests/test_public_api.py pins it.
_PUBLIC: Final[dict[str, tuple[str, ...]]] = {
    "inboxcheck._batch": ("BatchLine", "BatchSummary", "run_batch"),
    "inboxcheck._check": ("CheckContext", "CheckSpec", "Outcome"),
    "inboxcheck._errors": (
        "AccountError",
        "ApiError",
        "ApiKeyError",
        "CreateFailed",
        "FieldProblem",
        "InboxcheckError",
        "InsecureKeyFileWarning",
        "OptionsError",
        "PresetError",
    ),
    "inboxcheck._input": ("load_account", "parse_account"),
    "inboxcheck._limits": ("recommend_daily_limit",),
    "inboxcheck._models": (
        "Account",
        "AccountView",
        "CheckResult",
        "DailyLimitRecommendation",
        "Finding",
        "InboxType",
        "PresetRef",
        "RampStep",
        "Report",
        "Severity",
        "Stage",
        "Status",
        "Verdict",
    ),
    "inboxcheck._options": ("CheckOptions", "Family", "Nameserver"),
    "inboxcheck._presets": ("Preset", "Presets", "TlsMode", "load_presets"),
    "inboxcheck._render": ("Format", "JsonRenderer", "TextRenderer"),
    "inboxcheck._runner": ("check", "check_sync"),
    "inboxcheck._schema": ("report_schema",),
    "inboxcheck.discovery.model": ("Candidate", "Discovery"),
    "inboxcheck.discovery.run": ("discover", "discover_sync"),
    "inboxcheck.platform.batch": ("ConnectBatchSummary", "connect_batch"),
    "inboxcheck.platform.client": ("PlatformClient",),
    "inboxcheck.platform.connect": ("ConnectResult", "DailyLimitChoice", "connect", "connect_sync"),
    "inboxcheck.platform.key": ("ApiKey", "load_api_key"),
    "inboxcheck.platform.outcomes": (
        "ApiExit",
        "ApiOutcome",
        "BulkItem",
        "BulkOutcome",
        "CreateOutcome",
        "CreatedInbox",
        "InboxStatus",
    ),
}

_LAZY: Final = {name: module for module, names in _PUBLIC.items() for name in names}

__all__ = sorted([*_LAZY, "__version__"])

if TYPE_CHECKING:
    from inboxcheck._batch import (
        BatchLine as BatchLine,
    )
    from inboxcheck._batch import (
        BatchSummary as BatchSummary,
    )
    from inboxcheck._batch import (
        run_batch as run_batch,
    )
    from inboxcheck._check import (
        CheckContext as CheckContext,
    )
    from inboxcheck._check import (
        CheckSpec as CheckSpec,
    )
    from inboxcheck._check import (
        Outcome as Outcome,
    )
    from inboxcheck._errors import (
        AccountError as AccountError,
    )
    from inboxcheck._errors import (
        ApiError as ApiError,
    )
    from inboxcheck._errors import (
        ApiKeyError as ApiKeyError,
    )
    from inboxcheck._errors import (
        CreateFailed as CreateFailed,
    )
    from inboxcheck._errors import (
        FieldProblem as FieldProblem,
    )
    from inboxcheck._errors import (
        InboxcheckError as InboxcheckError,
    )
    from inboxcheck._errors import (
        InsecureKeyFileWarning as InsecureKeyFileWarning,
    )
    from inboxcheck._errors import (
        OptionsError as OptionsError,
    )
    from inboxcheck._errors import (
        PresetError as PresetError,
    )
    from inboxcheck._input import (
        load_account as load_account,
    )
    from inboxcheck._input import (
        parse_account as parse_account,
    )
    from inboxcheck._limits import (
        recommend_daily_limit as recommend_daily_limit,
    )
    from inboxcheck._models import (
        Account as Account,
    )
    from inboxcheck._models import (
        AccountView as AccountView,
    )
    from inboxcheck._models import (
        CheckResult as CheckResult,
    )
    from inboxcheck._models import (
        DailyLimitRecommendation as DailyLimitRecommendation,
    )
    from inboxcheck._models import (
        Finding as Finding,
    )
    from inboxcheck._models import (
        InboxType as InboxType,
    )
    from inboxcheck._models import (
        PresetRef as PresetRef,
    )
    from inboxcheck._models import (
        RampStep as RampStep,
    )
    from inboxcheck._models import (
        Report as Report,
    )
    from inboxcheck._models import (
        Severity as Severity,
    )
    from inboxcheck._models import (
        Stage as Stage,
    )
    from inboxcheck._models import (
        Status as Status,
    )
    from inboxcheck._models import (
        Verdict as Verdict,
    )
    from inboxcheck._options import (
        CheckOptions as CheckOptions,
    )
    from inboxcheck._options import (
        Family as Family,
    )
    from inboxcheck._options import (
        Nameserver as Nameserver,
    )
    from inboxcheck._presets import (
        Preset as Preset,
    )
    from inboxcheck._presets import (
        Presets as Presets,
    )
    from inboxcheck._presets import (
        TlsMode as TlsMode,
    )
    from inboxcheck._presets import (
        load_presets as load_presets,
    )
    from inboxcheck._render import (
        Format as Format,
    )
    from inboxcheck._render import (
        JsonRenderer as JsonRenderer,
    )
    from inboxcheck._render import (
        TextRenderer as TextRenderer,
    )
    from inboxcheck._runner import (
        check as check,
    )
    from inboxcheck._runner import (
        check_sync as check_sync,
    )
    from inboxcheck._schema import (
        report_schema as report_schema,
    )
    from inboxcheck.discovery.model import (
        Candidate as Candidate,
    )
    from inboxcheck.discovery.model import (
        Discovery as Discovery,
    )
    from inboxcheck.discovery.run import (
        discover as discover,
    )
    from inboxcheck.discovery.run import (
        discover_sync as discover_sync,
    )
    from inboxcheck.platform.batch import (
        ConnectBatchSummary as ConnectBatchSummary,
    )
    from inboxcheck.platform.batch import (
        connect_batch as connect_batch,
    )
    from inboxcheck.platform.client import (
        PlatformClient as PlatformClient,
    )
    from inboxcheck.platform.connect import (
        ConnectResult as ConnectResult,
    )
    from inboxcheck.platform.connect import (
        DailyLimitChoice as DailyLimitChoice,
    )
    from inboxcheck.platform.connect import (
        connect as connect,
    )
    from inboxcheck.platform.connect import (
        connect_sync as connect_sync,
    )
    from inboxcheck.platform.key import (
        ApiKey as ApiKey,
    )
    from inboxcheck.platform.key import (
        load_api_key as load_api_key,
    )
    from inboxcheck.platform.outcomes import (
        ApiExit as ApiExit,
    )
    from inboxcheck.platform.outcomes import (
        ApiOutcome as ApiOutcome,
    )
    from inboxcheck.platform.outcomes import (
        BulkItem as BulkItem,
    )
    from inboxcheck.platform.outcomes import (
        BulkOutcome as BulkOutcome,
    )
    from inboxcheck.platform.outcomes import (
        CreatedInbox as CreatedInbox,
    )
    from inboxcheck.platform.outcomes import (
        CreateOutcome as CreateOutcome,
    )
    from inboxcheck.platform.outcomes import (
        InboxStatus as InboxStatus,
    )


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
