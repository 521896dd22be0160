from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.errors import ConfigError
from sidecar.settings import load_settings


def test_defaults_need_no_configuration() -> None:
    s = load_settings({}, env={})
    assert (s.host, s.port, s.upstream_url) == ("127.0.0.1", 8788, "https://api.anthropic.com")
    assert s.store == "sqlite:///sidecar-data/events.db"
    assert s.drain_timeout == 30 and s.upstream_timeout == 600


def test_precedence_flag_over_env_over_file(tmp_path: Path) -> None:
    cfg = tmp_path / "sidecar.yaml"
    cfg.write_text("port: 9001\nsession_header: X-Conv\nbudgets: {defaults: {session_max_usd: 2.0}}\n")
    s = load_settings({}, env={}, config_path=str(cfg))
    assert s.port == 9001 and s.session_header == "x-conv"
    assert s.policies["budgets"]["defaults"]["session_max_usd"] == 2.0
    s = load_settings({}, env={"SIDECAR_PORT": "9002"}, config_path=str(cfg))
    assert s.port == 9002
    s = load_settings({"port": "9003"}, env={"SIDECAR_PORT": "9002"}, config_path=str(cfg))
    assert s.port == 9003


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"SIDECAR_PORT": "eighty"}, "SIDECAR_PORT"),
        ({"SIDECAR_UPSTREAM_URL": "ftp://x"}, "SIDECAR_UPSTREAM_URL"),
        ({"SIDECAR_PROMPT_CACHE": "sometimes"}, "SIDECAR_PROMPT_CACHE"),
        ({"SIDECAR_STORE": "postgres://x"}, "SIDECAR_STORE"),
        ({"SIDECAR_DRAIN_TIMEOUT": "-1"}, "SIDECAR_DRAIN_TIMEOUT"),
    ],
)
def test_bad_values_name_the_key(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({}, env=env)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_file_key_is_rejected(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("prot: 1\n")
    with pytest.raises(ConfigError, match="prot"):
        load_settings({}, env={}, config_path=str(cfg))


def test_policy_environment_reaches_its_owners() -> None:
    from sidecar.fleet.service import ENV_NAMES

    env = {name: "7" for name in ENV_NAMES} | {"SIDECAR_SESSION_MAX_USD": "2.5", "SIDECAR_UNRELATED": "x"}
    s = load_settings({}, env=env)
    assert set(s.policy_env) == set(ENV_NAMES) | {"SIDECAR_SESSION_MAX_USD"}


def test_checks_section_is_a_list(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("checks:\n  - {name: nightly-eval, period: 1d, grace: 1h}\n")
    assert load_settings({}, env={}, config_path=str(cfg)).policies["checks"][0]["name"] == "nightly-eval"


def test_log_format_is_a_setting() -> None:
    assert load_settings({}, env={}).log_format == "auto"
    assert load_settings({}, env={"SIDECAR_LOG_FORMAT": "TEXT"}).log_format == "text"
    assert load_settings({"log_format": "json"}, env={"SIDECAR_LOG_FORMAT": "text"}).log_format == "json"
    with pytest.raises(ConfigError, match="SIDECAR_LOG_FORMAT"):
        load_settings({}, env={"SIDECAR_LOG_FORMAT": "xml"})


def test_a_misspelt_variable_is_warned_with_the_closest_name() -> None:
    env = {
        "SIDECAR_PROMT_CACHE": "off",
        "SIDECAR_SESION_MAX_USD": "1",
        "SIDECAR_ADMINPORT": "9000",
        "SIDECAR_WHATEVER_ELSE": "x",
        "SIDECAR_PORT": "9001",
        "SIDECAR_FLEET_PING_INTERVAL": "5",
        "SIDECAR_KEY_SALT": "s",
        "OTHER_PROMT_CACHE": "x",
    }
    warnings = load_settings({}, env=env).warnings
    assert len(warnings) == 4  # known names and names outside SIDECAR_* are left alone
    hints = {w.split(":")[0]: w for w in warnings}
    assert hints["SIDECAR_PROMT_CACHE"].endswith("(did you mean SIDECAR_PROMPT_CACHE?)")
    assert hints["SIDECAR_SESION_MAX_USD"].endswith("(did you mean SIDECAR_SESSION_MAX_USD?)")
    assert hints["SIDECAR_ADMINPORT"].endswith("(did you mean SIDECAR_ADMIN_PORT?)")
    assert "did you mean" not in hints["SIDECAR_WHATEVER_ELSE"]


def test_a_misspelt_file_key_names_the_closest_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("upstream_ulr: http://x\n")
    with pytest.raises(ConfigError, match=r"upstream_ulr: .*did you mean upstream_url\?"):
        load_settings({}, env={}, config_path=str(cfg))


def test_every_sidecar_variable_the_code_reads_is_known() -> None:
    """settings.KNOWN_ENV is the one list: every SIDECAR_* name in the package's source and in the test
    scripts is in it, and the budget parser's names are exactly BUDGET_ENV's."""
    import re

    from sidecar.core import budget_config as budgets
    from sidecar.settings import BUDGET_ENV, KNOWN_ENV

    root = Path(__file__).resolve().parent.parent
    sources = [*root.joinpath("sidecar").rglob("*.py"), root / "scripts" / "test"]
    named = set()
    for path in sources:
        named |= set(re.findall(r"\bSIDECAR_[A-Z0-9_]*[A-Z0-9]\b", path.read_text(encoding="utf-8")))
    not_variables = {"SIDECAR_ERROR", "SIDECAR_PREFIX"}  # constants that merely look like one
    assert named - not_variables - KNOWN_ENV == set()
    assert set(budgets._ENV) | {"SIDECAR_REDIS_FAIL_MODE"} == set(BUDGET_ENV)
