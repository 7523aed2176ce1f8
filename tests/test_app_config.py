"""The served app's Streamlit settings (.streamlit/config.toml), read through Streamlit's own
config loader in a fresh interpreter started in the repository, as `make run` serves it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_READ = """
import json
from streamlit import config
config.get_config_options(force_reparse=True)
names = ["client.toolbarMode", "client.showErrorDetails", "browser.gatherUsageStats"]
print(json.dumps({name: config.get_option(name) for name in names}))
"""


def _effective_options(cwd: Path, home: Path) -> dict:
    """The options as Streamlit resolves them in `cwd`; HOME points at an empty folder so that no
    personal ~/.streamlit/config.toml takes part."""
    env = {**os.environ, "HOME": str(home)}
    env = {k: v for k, v in env.items() if not k.startswith("STREAMLIT_")}
    out = subprocess.run(
        [sys.executable, "-c", _READ],
        cwd=cwd,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_served_app_hides_developer_options_and_tracebacks(tmp_path: Path) -> None:
    options = _effective_options(ROOT, tmp_path)
    assert options["client.toolbarMode"] == "viewer"  # no Deploy button, no developer menu entries
    assert options["client.showErrorDetails"] == "none"  # no traceback, type or message in the browser
    assert options["browser.gatherUsageStats"] is False


def test_without_the_repository_config_streamlit_defaults_show_them(tmp_path: Path) -> None:
    """The settings above come from the repository's file, not from Streamlit's defaults."""
    (tmp_path / "elsewhere").mkdir()
    options = _effective_options(tmp_path / "elsewhere", tmp_path)
    assert options["client.toolbarMode"] == "auto"
    assert options["client.showErrorDetails"] == "full"
