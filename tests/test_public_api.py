from __future__ import annotations

import subprocess
import sys

import pytest

import inboxcheck

EXPECTED = {
    "Account",
    "AccountError",
    "AccountView",
    "Alternative",
    "ApiError",
    "ApiExit",
    "ApiKey",
    "ApiKeyError",
    "ApiOutcome",
    "BatchLine",
    "BatchSummary",
    "BulkItem",
    "BulkOutcome",
    "Candidate",
    "Cause",
    "CheckContext",
    "ConnectBatchSummary",
    "CheckOptions",
    "CheckResult",
    "CheckSpec",
    "ConnectResult",
    "CreateFailed",
    "CreateOutcome",
    "Credential",
    "CredentialKind",
    "CreatedInbox",
    "DailyLimitChoice",
    "DailyLimitRecommendation",
    "Discovery",
    "Endpoint",
    "Diagnosis",
    "Family",
    "FieldProblem",
    "OAuthInputError",
    "Finding",
    "Format",
    "InboxStatus",
    "InboxType",
    "InboxcheckError",
    "InsecureKeyFileWarning",
    "JsonRenderer",
    "MailProtocol",
    "Nameserver",
    "OptionsError",
    "Outcome",
    "PlatformClient",
    "Preset",
    "PresetError",
    "PresetRef",
    "ResultsLogError",
    "Presets",
    "RampStep",
    "Report",
    "Severity",
    "SpfEvaluation",
    "SpfQuery",
    "SpfResult",
    "Stage",
    "Status",
    "TextRenderer",
    "TlsMode",
    "Verdict",
    "__version__",
    "check",
    "check_sync",
    "check_host",
    "check_host_sync",
    "connect",
    "connect_batch",
    "connect_sync",
    "discover",
    "discover_sync",
    "diagnose",
    "diagnose_sync",
    "load_account",
    "load_api_key",
    "load_presets",
    "parse_account",
    "recommend_daily_limit",
    "report_schema",
    "run_batch",
}


def test_public_api_is_pinned() -> None:
    assert set(inboxcheck.__all__) == EXPECTED
    for name in inboxcheck.__all__:
        assert getattr(inboxcheck, name) is not None, name


def test_importing_the_package_loads_no_heavy_dependency() -> None:
    code = (
        "import sys, inboxcheck; "
        "heavy = [m for m in ('pydantic', 'dns', 'aiosmtplib', 'aioimaplib', 'httpx', 'defusedxml') "
        "if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == ""


def test_check_sync_runs_without_an_event_loop() -> None:
    from tests.helpers import custom_payload

    report = inboxcheck.check_sync(custom_payload(), families=frozenset({inboxcheck.Family.ACCOUNT}))
    assert report.verdict is inboxcheck.Verdict.PASS


def test_type_checking_imports_mirror_the_public_table() -> None:
    """Type checkers read the TYPE_CHECKING imports, the runtime reads ``_PUBLIC``: they must agree."""
    import ast
    from pathlib import Path

    tree = ast.parse(Path(inboxcheck.__file__).read_text(encoding="utf-8"))
    imported: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom) and stmt.module is not None
                for alias in stmt.names:
                    # `X as X` is the explicit re-export mypy --strict needs.
                    assert alias.asname == alias.name, alias.name
                    imported[alias.name] = stmt.module
    assert imported == inboxcheck._LAZY


@pytest.mark.parametrize("name", ["check_sync", "connect_sync", "diagnose_sync"])
async def test_a_sync_wrapper_inside_a_running_loop_says_to_await(name: str) -> None:
    import gc
    import warnings

    from tests.helpers import custom_payload

    wrapper = getattr(inboxcheck, name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(inboxcheck.InboxcheckError, match=r"await inboxcheck\.(check|connect|diagnose)\("):
            wrapper(custom_payload(), families=frozenset({inboxcheck.Family.ACCOUNT}))
        gc.collect()
    assert [str(w.message) for w in caught] == []


def test_the_package_docstring_names_every_public_name() -> None:
    """``help(inboxcheck)`` shows the docstring first: it is the map of the API, kept complete."""
    import re

    words = set(re.findall(r"\w+", inboxcheck.__doc__ or ""))
    assert sorted(set(inboxcheck.__all__) - {"__version__"} - words) == []


def test_diagnose_sync_returns_a_typed_diagnosis() -> None:
    from tests.helpers import custom_payload

    result = inboxcheck.diagnose_sync(
        custom_payload(imap_port=143), families=frozenset({inboxcheck.Family.ACCOUNT})
    )
    assert isinstance(result, inboxcheck.Diagnosis)
    assert result.exit_code == 1
    assert [cause.code for cause in result.causes] == ["account.tls_port_mismatch"]
    assert isinstance(result.causes[0], inboxcheck.Cause)


def test_the_errors_module_imports_nothing_from_the_package() -> None:
    """Every module may raise an inboxcheck error, so ``_errors`` must import none of them (no circle)."""
    import ast
    from pathlib import Path

    source = Path(inboxcheck.__file__).with_name("_errors.py").read_text(encoding="utf-8")
    imported: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            imported.append("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            imported.extend(alias.name for alias in node.names)
    assert [name for name in imported if name.startswith(("inboxcheck", "."))] == []


def test_create_failed_is_still_an_api_error() -> None:
    assert issubclass(inboxcheck.CreateFailed, inboxcheck.ApiError)
    assert inboxcheck.CreateFailed.__module__ == "inboxcheck.platform.outcomes"


@pytest.mark.parametrize("name", ["check", "diagnose", "discover", "connect"])
def test_dns_servers_are_options_not_a_resolver_object(name: str) -> None:
    import inspect

    parameters = inspect.signature(getattr(inboxcheck, name)).parameters
    assert "resolver" not in parameters
    assert "nameservers" in inboxcheck.CheckOptions.model_fields
