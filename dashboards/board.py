"""Dashboard assembly: template variables, sibling links, rows and stable panel ids."""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import dashboard as dash_m

from dashboards.kit import CLICKHOUSE_TYPE, PROM, TAG, PanelBuilder


class _Numbered(cogbuilder.Builder[dash_m.Panel]):
    """Sets a panel's id on the built model (the builders share no typed ``id`` method)."""

    def __init__(self, inner: PanelBuilder, panel_id: int) -> None:
        self._inner = inner
        self._id = panel_id

    def build(self) -> dash_m.Panel:
        panel = self._inner.build()
        panel.id_val = self._id
        return panel


def prom_variable(name: str, label: str, query: str, description: str) -> dash.QueryVariable:
    """A multi-select label filter; ``All`` is ``.*`` so it can be used in ``=~`` matchers and SQL regexes."""
    return (
        dash.QueryVariable(name)
        .label(label)
        .description(description)
        .datasource(PROM)
        .query(query)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .refresh(dash_m.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dash_m.VariableSort.ALPHABETICAL_ASC)
        .current(dash_m.VariableOption(selected=True, text="All", value="$__all"))
    )


def datasource_variables(clickhouse: bool = False) -> list[cogbuilder.Builder[dash_m.VariableModel]]:
    variables: list[cogbuilder.Builder[dash_m.VariableModel]] = [
        dash.DatasourceVariable("datasource")
        .label("Prometheus")
        .description("Prometheus that scrapes the sidecars")
        .type("prometheus")
    ]
    if clickhouse:
        variables.append(
            dash.DatasourceVariable("clickhouse")
            .label("ClickHouse")
            .description("ClickHouse database holding the sidecar's events and sessions_rollup tables")
            .type(CLICKHOUSE_TYPE)
        )
    return variables


APP_VARIABLE = ("app", "App", "label_values(sidecar_requests_total, app)", "App name (x-app-name header)")
MODEL_VARIABLE = (
    "model",
    "Model",
    'label_values(sidecar_requests_total{app=~"$app"}, model)',
    "Canonical model id from the price table (other = unknown)",
)


def new_dashboard(
    uid: str,
    title: str,
    description: str,
    variables: Sequence[cogbuilder.Builder[dash_m.VariableModel]],
    rows: Sequence[tuple[str, Sequence[PanelBuilder]]],
) -> dash.Dashboard:
    """A dashboard with the shared tag, links to its siblings, a 1-minute refresh and numbered panels."""
    board = (
        dash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG])
        .refresh("1m")
        .time("now-6h", "now")
        .timezone("browser")
        .tooltip(dash_m.DashboardCursorSync.CROSSHAIR)
        .link(
            dash.DashboardLink("claude-sidecar")
            .type(dash_m.DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
        .annotation(
            dash.AnnotationQuery()
            .name("Annotations & Alerts")
            .datasource(dash_m.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
            .enable(True)
            .hide(True)
            .icon_color("rgba(0, 211, 255, 1)")
            .type("dashboard")
            .built_in(1)
        )
        .variables(list(variables))
    )
    panel_id = 1
    for row_title, panels in rows:
        board = board.with_row(dash.Row(row_title).id(panel_id))
        panel_id += 1
        for panel in panels:
            board = board.with_panel(_Numbered(panel, panel_id))
            panel_id += 1
    return board
