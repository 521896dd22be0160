"""``checks:`` / ``notify:`` parsing and ``SIDECAR_*`` precedence; errors name the bad key."""

from __future__ import annotations

import pytest
import yaml

from sidecar.alerting.config import (
    CHECKIN,
    FLEET_MEMBERS,
    FLEET_SIZE,
    TRAFFIC,
    AlertingConfig,
    CheckSpec,
    Webhook,
    parse_duration,
    parse_hours,
)
from sidecar.errors import ConfigError

SPEC_EXAMPLE = """
checks:
  - {name: nightly-eval, period: 1d, grace: 1h}
  - {name: voice-fleet-size, fleet: voice, min_members: 3}
  - {name: traffic, no_success_for: 10m}
  - {name: voice-members, fleet: voice, grace: 45s, labels: {team: voice}}
  - {name: office-traffic, no_success_for: 5m, hours: "09:00-17:30"}
notify:
  alertmanager: {url: "http://alertmanager:9093"}
  webhooks: [{url: "https://hooks.example/T0/B0", format: slack}]
"""


def test_spec_example() -> None:
    doc = yaml.safe_load(SPEC_EXAMPLE)
    config = AlertingConfig.from_sources(doc["checks"], doc["notify"], {})
    assert config.checks == (
        CheckSpec("nightly-eval", CHECKIN, 86400.0, 3600.0),
        CheckSpec("voice-fleet-size", FLEET_SIZE, 0.0, 30.0, fleet="voice", min_members=3),
        CheckSpec("traffic", TRAFFIC, 600.0, 0.0),
        CheckSpec("voice-members", FLEET_MEMBERS, 0.0, 45.0, fleet="voice", labels={"team": "voice"}),
        CheckSpec("office-traffic", TRAFFIC, 300.0, 0.0, hours=(540, 1050)),
    )
    assert config.alertmanager_url == "http://alertmanager:9093"
    assert config.webhooks == (Webhook("https://hooks.example/T0/B0", "slack"),)
    assert (config.after_misses, config.repeat_interval_s) == (1, 14400.0)


def test_environment_beats_file_and_sets_defaults() -> None:
    env = {
        "SIDECAR_CHECK_DEFAULT_PERIOD": "120",
        "SIDECAR_CHECK_DEFAULT_GRACE": "0",
        "SIDECAR_ALERT_AFTER_MISSES": "2",
        "SIDECAR_ALERT_REPEAT_INTERVAL": "30m",
        "SIDECAR_ALERTMANAGER_URL": "http://127.0.0.1:9093/",
        "SIDECAR_ALERT_WEBHOOK_URL": "http://127.0.0.1:1/a,http://127.0.0.1:1/b",
    }
    notify = {"after_misses": 5, "alertmanager": {"url": "http://other:9093"}}
    config = AlertingConfig.from_sources([{"name": "job"}], notify, env)
    assert config.checks == (CheckSpec("job", CHECKIN, 120.0, 0.0),)
    assert (config.default_period_s, config.default_grace_s) == (120.0, 0.0)
    assert (config.after_misses, config.repeat_interval_s) == (2, 1800.0)
    assert config.alertmanager_url == "http://127.0.0.1:9093"
    assert [w.url for w in config.webhooks] == ["http://127.0.0.1:1/a", "http://127.0.0.1:1/b"]


def test_mapping_form_of_checks() -> None:
    config = AlertingConfig.from_sources({"backup": {"period": "6h"}, "ping": None}, None, {})
    assert [(c.name, c.period_s, c.grace_s) for c in config.checks] == [
        ("backup", 21600.0, 30.0),
        ("ping", 60.0, 30.0),
    ]


@pytest.mark.parametrize(
    ("checks", "notify", "env", "key"),
    [
        ([{"name": "a", "period": "soon"}], None, {}, "checks[0].period"),
        ([{"name": "a"}, {"name": "a"}], None, {}, "checks[1].name"),
        ([{"name": "a", "colour": "red"}], None, {}, "checks[0].colour"),
        ([{"name": "a b"}], None, {}, "checks[0].name"),
        ([{"name": "fleet:x"}], None, {}, "checks[0].name"),
        ([{"name": "t", "kind": "traffic"}], None, {}, "checks[0].no_success_for"),
        ([{"name": "f", "fleet": "v", "min_members": 0}], None, {}, "checks[0].min_members"),
        ([{"name": "t", "no_success_for": "5m", "hours": "9-17"}], None, {}, "checks[0].hours"),
        ([{"name": "a", "kind": "cron"}], None, {}, "checks[0].kind"),
        ("nope", None, {}, "checks"),
        (None, {"webhooks": [{"url": "ftp://x"}]}, {}, "notify.webhooks[0].url"),
        (None, {"webhooks": [{"url": "http://x", "format": "teams"}]}, {}, "notify.webhooks[0].format"),
        (None, {"pagerduty": {}}, {}, "notify.pagerduty"),
        (None, None, {"SIDECAR_ALERT_AFTER_MISSES": "0"}, "SIDECAR_ALERT_AFTER_MISSES"),
        (None, None, {"SIDECAR_CHECK_DEFAULT_PERIOD": "-5"}, "SIDECAR_CHECK_DEFAULT_PERIOD"),
        (None, None, {"SIDECAR_ALERTMANAGER_URL": "alertmanager:9093"}, "SIDECAR_ALERTMANAGER_URL"),
    ],
)
def test_errors_name_the_key(checks: object, notify: object, env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        AlertingConfig.from_sources(checks, notify, env)
    assert str(info.value).startswith(key + ":") or str(info.value).startswith(key + " ")


def test_durations_and_hours() -> None:
    assert parse_duration("k", "90") == 90.0
    assert parse_duration("k", 1.5) == 1.5
    assert parse_duration("k", "1h30m") == 5400.0
    assert parse_duration("k", "250ms") == 0.25
    assert parse_duration("k", "2d") == 172800.0
    assert parse_duration("k", "0", allow_zero=True) == 0.0
    for bad in ("0", "1x", "h", "1h 30m", True, "nan", "inf"):
        with pytest.raises(ConfigError):
            parse_duration("k", bad)
    assert parse_hours("k", "22:00-06:00") == (1320, 360)
    for bad in ("25:00-01:00", "09:00-09:00", "9h-17h"):
        with pytest.raises(ConfigError):
            parse_hours("k", bad)
