"""The service without a server: its committed OpenAPI document, its start-up refusals, its settings,
and that the CLI starts without FastAPI. (The served behaviour is in tests/test_service.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from inboxcheck._errors import InboxcheckError
from inboxcheck.cli import cli
from inboxcheck.service.openapi import committed_openapi, generated_openapi
from inboxcheck.service.settings import ServiceSettings, is_loopback, read_tokens
from tests.cli.test_schema import PYDANTIC, _denoised
from tests.helpers import google_payload


def test_the_committed_openapi_document_is_current() -> None:
    generated = json.loads(json.dumps(generated_openapi()))
    regenerate = "regenerate: python -m inboxcheck.service.openapi > inboxcheck/openapi.json"
    if PYDANTIC >= (2, 10):
        assert generated == committed_openapi(), regenerate
    else:  # the lowest run: pydantic writes the same models a little differently (see test_schema)
        assert _denoised(generated) == _denoised(committed_openapi()), regenerate


def test_the_openapi_document_uses_the_librarys_models() -> None:
    document = committed_openapi()
    schemas = document["components"]["schemas"]
    assert {"Report", "Diagnosis", "Discovery", "AccountPayload", "InputErrorDocument"} <= set(schemas)
    check = document["paths"]["/v1/check"]["post"]
    assert check["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Report"
    }
    assert set(check["responses"]) >= {"200", "401", "413", "422", "429", "503"}
    assert schemas["AccountPayload"]["properties"]["smtp_password"]["writeOnly"] is True


def test_the_cli_starts_without_loading_fastapi() -> None:
    code = "import sys, inboxcheck.cli; sys.exit('fastapi' in sys.modules or 'uvicorn' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.parametrize(
    ("args", "env", "said"),
    [
        ([], {}, "no API token"),
        (["--no-auth", "--host", "192.0.2.1"], {}, "only on a loopback address"),
        (["--no-auth"], {"INBOXCHECK_API_TOKENS": "a"}, "choose one"),
    ],
)
def test_the_server_refuses_to_start_without_auth_unless_loopback_and_no_auth(
    args: list[str], env: dict[str, str], said: str
) -> None:
    result = CliRunner().invoke(cli, ["serve", *args], env={"INBOXCHECK_API_TOKENS": "", **env})
    assert result.exit_code == 2
    assert said in result.output


def test_tokens_come_from_the_environment_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("# ops\nfile-one\n\n  file-two  \nenv-b\n", encoding="utf-8")
    tokens = read_tokens(" env-a , env-b,,", path)
    assert [t.get_secret_value() for t in tokens] == ["env-a", "env-b", "file-one", "file-two"]
    settings = ServiceSettings(tokens=tokens)
    assert settings.token_matches("file-two") and settings.token_matches("env-a")
    assert not settings.token_matches("file-tw") and not settings.token_matches("")
    assert "env-a" not in repr(settings)


def test_a_request_may_add_checks_but_keeps_the_servers_options() -> None:
    from inboxcheck._options import CheckOptions

    settings = ServiceSettings(options=CheckOptions(timeout=3, allow_plaintext=False))
    options = settings.check_options({"send_test": True, "dkim_selectors": ("s1",)})
    assert options.timeout == 3 and options.send_test and options.dkim_selectors == ("s1",)
    # The deadline was not chosen, so the send test makes room for itself as on the command line.
    assert options.deadline > CheckOptions().deadline
    assert settings.check_options({}) is settings.options
    with pytest.raises(InboxcheckError, match="no spaces"):
        ServiceSettings(tokens=(SecretStr("a b"),))


ANY_ADDRESS = "0.0.0." + "0"  # every interface: refused with --no-auth


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("::1", True), ("localhost", True), (ANY_ADDRESS, False), ("192.0.2.1", False)],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


async def test_while_draining_new_checks_and_batches_are_503() -> None:
    import httpx

    from inboxcheck.service.app import create_app

    app = create_app(ServiceSettings(tokens=(SecretStr("t"),)))
    app.state.engine.draining = True  # as after SIGTERM, before the last connection closes
    headers = {"Authorization": "Bearer t"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service") as client:
        for path in ("/v1/check", "/v1/diagnose", "/v1/batches"):
            response = await client.post(path, json=google_payload(), headers=headers)
            assert response.status_code == 503, path
        assert (await client.get("/healthz")).status_code == 503
        metrics = (await client.get("/metrics", headers=headers)).text
        assert 'inboxcheck_refused_total{reason="shutting_down"}' in metrics


def test_without_the_serve_extra_it_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m.startswith("inboxcheck.service")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if it were not installed
    result = CliRunner().invoke(cli, ["serve", "--no-auth"], env={"INBOXCHECK_API_TOKENS": ""})
    assert result.exit_code == 2
    assert "pip install 'inboxcheck[serve]'" in result.output
