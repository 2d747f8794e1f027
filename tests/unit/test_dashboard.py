"""deploy/grafana/contact-lookup.json is built on the metrics the code exports: every panel
query names only exported metrics, and every exported metric has a panel."""

from __future__ import annotations

import json
import re
from pathlib import Path

from contact_lookup import metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = json.loads((ROOT / "deploy" / "grafana" / "contact-lookup.json").read_text())
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


def exported() -> set[str]:
    """Metric names as the exposition writes them (its TYPE lines)."""
    text = metrics.exposition().decode()
    return set(re.findall(r"^# TYPE (contact_lookup_\w+) ", text, re.MULTILINE))


def base_name(series: str, names: set[str]) -> str:
    if series in names:
        return series
    for suffix in HISTOGRAM_SERIES:
        if series.endswith(suffix) and series[: -len(suffix)] in names:
            return series[: -len(suffix)]
    return series


def test_the_documented_names_are_the_exported_names() -> None:
    assert exported() == set(metrics.EXPORTED)


def test_every_panel_queries_exported_metrics_and_every_metric_has_a_panel() -> None:
    names = exported()
    used: set[str] = set()
    panels = DASHBOARD["panels"]
    assert panels
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            series = re.findall(r"\bcontact_lookup_\w+", target["expr"])
            assert series, (panel["title"], target["expr"])
            for s in series:
                name = base_name(s, names)
                assert name in names, f"{panel['title']}: {s} is not exported"
                used.add(name)
    assert used == names, f"metrics without a panel: {names - used}"


def test_no_label_could_carry_personal_data() -> None:
    forbidden = {"phone", "phone_number", "number", "name", "email", "contact"}
    for family in metrics.registry().collect():
        if family.name.startswith("contact_lookup_"):
            for sample in family.samples:
                assert not forbidden & set(sample.labels), family.name
    metric_objects = [getattr(metrics, n) for n in dir(metrics) if n.isupper()]
    for obj in metric_objects:
        labels = set(getattr(obj, "_labelnames", ()))
        assert not forbidden & labels, obj
