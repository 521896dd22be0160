"""Panel and query vocabulary on top of grafana-foundation-sdk for the sidecar's dashboards.

Every panel gets a title, a description and a unit; every query goes through a datasource *variable*
(``$datasource`` for Prometheus, ``$clickhouse`` for ClickHouse) so the JSON imports anywhere.
Panel ids are assigned in order by ``new_dashboard`` so the output is stable byte for byte.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from grafana_foundation_sdk.builders import bargauge, heatmap, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus as prom_b
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dash_m
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

TAG = "claude-sidecar"
PROM = dash_m.DataSourceRef(type_val="prometheus", uid="${datasource}")
CLICKHOUSE_TYPE = "grafana-clickhouse-datasource"
CLICKHOUSE = dash_m.DataSourceRef(type_val=CLICKHOUSE_TYPE, uid="${clickhouse}")
# Label matchers that follow the dashboard's template variables.
APP = 'app=~"$app"'
MODEL = 'model=~"$model"'
GENAI_MODEL = 'gen_ai_request_model=~"$model"'
RATE = "[$__rate_interval]"

PanelBuilder = cogbuilder.Builder[dash_m.Panel]


@dataclass(frozen=True)
class Q:
    """A PromQL target. ``fmt`` is ``time_series``, ``table`` or ``heatmap``."""

    expr: str
    legend: str = ""
    instant: bool = False
    fmt: str = "time_series"


@dataclass(frozen=True)
class SQL:
    """A ClickHouse target (grafana-clickhouse-datasource, SQL editor). ``kind``: table | timeSeries."""

    sql: str
    kind: str = "table"


class ClickHouseQuery(cogvariants.Dataquery):
    """The plugin has no model in the SDK; this emits its query JSON (v4 fields plus legacy ``format``)."""

    def __init__(self, ref_id: str, query: SQL) -> None:
        self.ref_id = ref_id
        self.query = query

    def to_json(self) -> dict[str, object]:
        return {
            "datasource": CLICKHOUSE.to_json(),
            "editorType": "sql",
            "format": 1 if self.query.kind == "table" else 0,
            "queryType": self.query.kind,
            "rawSql": self.query.sql,
            "refId": self.ref_id,
        }


class ClickHouseTarget(cogbuilder.Builder[cogvariants.Dataquery]):
    def __init__(self, ref_id: str, query: SQL) -> None:
        self._query = ClickHouseQuery(ref_id, query)

    def build(self) -> cogvariants.Dataquery:
        return self._query


def quantile(q: float, metric: str, by: str, matchers: str = "") -> str:
    """``histogram_quantile`` over a histogram's buckets, rated over Grafana's rate interval."""
    selector = f"{metric}_bucket{{{matchers}}}" if matchers else f"{metric}_bucket"
    return f"histogram_quantile({q}, sum by (le, {by}) (rate({selector}{RATE})))"


def quantiles(metric: str, by: str, matchers: str = "", label: str = "") -> list[Q]:
    """p50 / p95 / p99 targets of one histogram, legend ``<label> pNN``."""
    name = label or "{{" + by + "}}"
    return [Q(quantile(q, metric, by, matchers), f"{name} p{int(q * 100)}") for q in (0.5, 0.95, 0.99)]


def _targets(queries: Sequence[Q | SQL]) -> list[cogbuilder.Builder[cogvariants.Dataquery]]:
    out: list[cogbuilder.Builder[cogvariants.Dataquery]] = []
    for i, query in enumerate(queries):
        ref = chr(ord("A") + i)
        if isinstance(query, SQL):
            out.append(ClickHouseTarget(ref, query))
            continue
        target = prom_b.Dataquery().expr(query.expr).ref_id(ref).datasource(PROM)
        target = target.legend_format(query.legend or "__auto")
        target = target.instant() if query.instant else target.range()
        if query.fmt != "time_series":
            target = target.format(PromQueryFormat(query.fmt))
        out.append(target)
    return out


def _source(queries: Sequence[Q | SQL]) -> dash_m.DataSourceRef:
    return CLICKHOUSE if any(isinstance(q, SQL) for q in queries) else PROM


def thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    config = dash.ThresholdsConfig().mode(dash_m.ThresholdsMode.ABSOLUTE)
    return config.steps([dash_m.Threshold(value=v, color=c) for v, c in steps])


def graph(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Q | SQL],
    *,
    width: int = 12,
    height: int = 8,
    stack: bool = False,
) -> PanelBuilder:
    """A time series panel; ``stack`` stacks series (shares of a whole)."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(_source(queries))
        .targets(_targets(queries))
        .span(width)
        .height(height)
        .fill_opacity(10)
        .legend(common_b.VizLegendOptions().display_mode(common.LegendDisplayMode.LIST).show_legend(True))
    )
    if stack:
        panel = panel.stacking(common_b.StackingConfig().mode(common.StackingMode.NORMAL)).fill_opacity(40)
    return panel


def single(
    title: str,
    description: str,
    unit: str,
    query: Q,
    *,
    steps: Sequence[tuple[float | None, str]] = ((None, "green"),),
    width: int = 4,
    height: int = 4,
) -> PanelBuilder:
    """A stat panel showing the last value, coloured by ``steps``."""
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(PROM)
        .targets(_targets([query]))
        .thresholds(thresholds(*steps))
        .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .span(width)
        .height(height)
    )


def grid(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Q | SQL],
    *,
    width: int = 24,
    height: int = 8,
) -> PanelBuilder:
    """A table panel (instant PromQL in table format, or ClickHouse rows)."""
    return (
        table.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(_source(queries))
        .targets(_targets(queries))
        .span(width)
        .height(height)
    )


def buckets(
    title: str, description: str, unit: str, query: Q, *, width: int = 12, height: int = 8
) -> PanelBuilder:
    """Bar gauge of a histogram's per-bucket counts (``fmt="heatmap"`` turns cumulative buckets into bins)."""
    return (
        bargauge.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(PROM)
        .targets(_targets([query]))
        .orientation(common.VizOrientation.VERTICAL)
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .span(width)
        .height(height)
    )


def heat(
    title: str, description: str, unit: str, query: Q, *, width: int = 12, height: int = 8
) -> PanelBuilder:
    """Heatmap of a histogram over time; ``unit`` is the bucket axis' unit."""
    y_axis = heatmap.YAxisConfig().unit(unit)
    return (
        heatmap.Panel()
        .title(title)
        .description(description)
        .unit("short")
        .datasource(PROM)
        .targets(_targets([query]))
        .calculate(False)
        .y_axis(y_axis)
        .span(width)
        .height(height)
    )


def states(
    title: str,
    description: str,
    query: Q,
    mappings: Sequence[tuple[str, str, str]],
    *,
    width: int = 24,
    height: int = 6,
) -> PanelBuilder:
    """State timeline with value mappings ``(value, text, colour)``."""
    value_map = dash_m.ValueMap(
        options={v: dash_m.ValueMappingResult(text=t, color=c) for v, t, c in mappings}
    )
    return (
        statetimeline.Panel()
        .title(title)
        .description(description)
        .unit("none")
        .datasource(PROM)
        .targets(_targets([query]))
        .mappings([value_map])
        .span(width)
        .height(height)
    )
