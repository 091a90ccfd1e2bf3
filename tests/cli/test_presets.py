"""inboxcheck presets and presets show."""

from __future__ import annotations

import json

from tests.cli.runner import run


def test_presets_list_and_show() -> None:
    listing = run(["presets"])
    assert listing.exit_code == 0
    assert "google-workspace" in listing.stdout and "microsoft-365" in listing.stdout
    shown = run(["presets", "show", "microsoft-365"])
    assert "outlook.office365.com:993" in shown.stdout
    assert "IMAP basic auth retired" in shown.stdout
    as_json = json.loads(run(["presets", "show", "google-workspace", "--format", "json"]).stdout)
    assert as_json["dns"]["spf_includes"] == ["_spf.google.com"]
    missing = run(["presets", "show", "nope"])
    assert missing.exit_code == 2 and "known presets" in missing.stderr
