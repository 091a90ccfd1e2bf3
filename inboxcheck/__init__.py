"""inboxcheck: preflight and troubleshooting for bring-your-own-credentials SMTP/IMAP inboxes.

Validate the account payload, check the sending domain's DNS, try real SMTP and IMAP logins, explain
every failure, and only then create the inbox on the sending platform::

    import inboxcheck

    report = await inboxcheck.check(payload, nameservers=["127.0.0.1:5353"])
    print(report.verdict, [f.code for f in report.findings()])

    diagnosis = inboxcheck.diagnose_sync(payload)  # outside an event loop
    for cause in diagnosis.causes:
        print(cause.rank, cause.code, cause.fix)

The public API (``__all__``), by task; modules with a leading underscore are private:

- Check: check, check_sync, load_account, parse_account, run_batch, BatchLine, BatchSummary
- SPF for a client address (RFC 7208 check_host): check_host, check_host_sync, SpfEvaluation,
  SpfResult, SpfQuery
- Log in with an OAuth2 token: Credential (``Credential.bearer``, given to
  ``Account.with_credentials``), CredentialKind
- Find the settings from an address: discover, discover_sync, Discovery, Candidate
- Troubleshoot: diagnose, diagnose_sync, Diagnosis, Cause, Alternative
- Create the inbox: connect, connect_sync, connect_batch, ConnectResult, ConnectBatchSummary,
  DailyLimitChoice, PlatformClient, ApiKey, load_api_key, ApiExit, ApiOutcome, CreateOutcome,
  CreatedInbox, InboxStatus, BulkItem, BulkOutcome
- Read a report: Report, CheckResult, Finding, Severity, Status, Verdict, Account, AccountView,
  InboxType, PresetRef, DailyLimitRecommendation, RampStep, Stage, recommend_daily_limit,
  report_schema, Format, JsonRenderer, TextRenderer
- Options and provider presets: CheckOptions, Family, Nameserver, Preset, Presets, load_presets
- Servers: Endpoint (protocol, host, port, TlsMode; Account.endpoint), MailProtocol, TlsMode
- Write a check: CheckContext, CheckSpec, Outcome
- Errors (all under InboxcheckError): AccountError, FieldProblem, OptionsError, PresetError,
  ApiError, ApiKeyError, CreateFailed, ResultsLogError, OAuthInputError; and the warning
  InsecureKeyFileWarning

Models are pydantic v2 models: ``help()`` on one lists pydantic's own methods after its fields.
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
    "inboxcheck._credential": ("Credential", "CredentialKind"),
    "inboxcheck._diagnose": ("Alternative", "Cause", "Diagnosis", "diagnose", "diagnose_sync"),
    "inboxcheck._errors": (
        "AccountError",
        "ApiError",
        "ApiKeyError",
        "FieldProblem",
        "InboxcheckError",
        "InsecureKeyFileWarning",
        "OAuthInputError",
        "OptionsError",
        "PresetError",
        "ResultsLogError",
    ),
    "inboxcheck._input": ("load_account", "parse_account"),
    "inboxcheck._endpoint": ("Endpoint", "MailProtocol", "TlsMode"),
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
    "inboxcheck._presets": ("Preset", "Presets", "load_presets"),
    "inboxcheck.cli._report": ("Format", "JsonRenderer", "TextRenderer"),
    "inboxcheck._runner": ("check", "check_sync"),
    "inboxcheck._schema": ("report_schema",),
    "inboxcheck.discovery.model": ("Candidate", "Discovery"),
    "inboxcheck.dns.spf_eval": ("SpfEvaluation", "SpfQuery", "SpfResult"),
    "inboxcheck.dns.spf_entry": ("check_host", "check_host_sync"),
    "inboxcheck.discovery.run": ("discover", "discover_sync"),
    "inboxcheck.platform.batch": ("ConnectBatchSummary", "connect_batch"),
    "inboxcheck.platform.client": ("PlatformClient",),
    "inboxcheck.platform.connect": ("ConnectResult", "connect", "connect_sync"),
    "inboxcheck.platform.gate": ("DailyLimitChoice",),
    "inboxcheck.platform.key": ("ApiKey", "load_api_key"),
    "inboxcheck.platform.outcomes": (
        "ApiExit",
        "ApiOutcome",
        "BulkItem",
        "BulkOutcome",
        "CreateFailed",
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
        BatchSummary as BatchSummary,
        run_batch as run_batch,
    )
    from inboxcheck._check import (
        CheckContext as CheckContext,
        CheckSpec as CheckSpec,
        Outcome as Outcome,
    )
    from inboxcheck._credential import (
        Credential as Credential,
        CredentialKind as CredentialKind,
    )
    from inboxcheck._diagnose import (
        Alternative as Alternative,
        Cause as Cause,
        Diagnosis as Diagnosis,
        diagnose as diagnose,
        diagnose_sync as diagnose_sync,
    )
    from inboxcheck._endpoint import (
        Endpoint as Endpoint,
        MailProtocol as MailProtocol,
        TlsMode as TlsMode,
    )
    from inboxcheck._errors import (
        AccountError as AccountError,
        ApiError as ApiError,
        ApiKeyError as ApiKeyError,
        FieldProblem as FieldProblem,
        InboxcheckError as InboxcheckError,
        InsecureKeyFileWarning as InsecureKeyFileWarning,
        OAuthInputError as OAuthInputError,
        OptionsError as OptionsError,
        PresetError as PresetError,
        ResultsLogError as ResultsLogError,
    )
    from inboxcheck._input import (
        load_account as load_account,
        parse_account as parse_account,
    )
    from inboxcheck._limits import (
        recommend_daily_limit as recommend_daily_limit,
    )
    from inboxcheck._models import (
        Account as Account,
        AccountView as AccountView,
        CheckResult as CheckResult,
        DailyLimitRecommendation as DailyLimitRecommendation,
        Finding as Finding,
        InboxType as InboxType,
        PresetRef as PresetRef,
        RampStep as RampStep,
        Report as Report,
        Severity as Severity,
        Stage as Stage,
        Status as Status,
        Verdict as Verdict,
    )
    from inboxcheck._options import (
        CheckOptions as CheckOptions,
        Family as Family,
        Nameserver as Nameserver,
    )
    from inboxcheck._presets import (
        Preset as Preset,
        Presets as Presets,
        load_presets as load_presets,
    )
    from inboxcheck._runner import (
        check as check,
        check_sync as check_sync,
    )
    from inboxcheck._schema import (
        report_schema as report_schema,
    )
    from inboxcheck.cli._report import (
        Format as Format,
        JsonRenderer as JsonRenderer,
        TextRenderer as TextRenderer,
    )
    from inboxcheck.discovery.model import (
        Candidate as Candidate,
        Discovery as Discovery,
    )
    from inboxcheck.discovery.run import (
        discover as discover,
        discover_sync as discover_sync,
    )
    from inboxcheck.dns.spf_entry import (
        check_host as check_host,
        check_host_sync as check_host_sync,
    )
    from inboxcheck.dns.spf_eval import (
        SpfEvaluation as SpfEvaluation,
        SpfQuery as SpfQuery,
        SpfResult as SpfResult,
    )
    from inboxcheck.platform.batch import (
        ConnectBatchSummary as ConnectBatchSummary,
        connect_batch as connect_batch,
    )
    from inboxcheck.platform.client import (
        PlatformClient as PlatformClient,
    )
    from inboxcheck.platform.connect import (
        ConnectResult as ConnectResult,
        connect as connect,
        connect_sync as connect_sync,
    )
    from inboxcheck.platform.gate import (
        DailyLimitChoice as DailyLimitChoice,
    )
    from inboxcheck.platform.key import (
        ApiKey as ApiKey,
        load_api_key as load_api_key,
    )
    from inboxcheck.platform.outcomes import (
        ApiExit as ApiExit,
        ApiOutcome as ApiOutcome,
        BulkItem as BulkItem,
        BulkOutcome as BulkOutcome,
        CreatedInbox as CreatedInbox,
        CreateFailed as CreateFailed,
        CreateOutcome as CreateOutcome,
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
