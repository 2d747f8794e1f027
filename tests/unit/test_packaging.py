"""The installed distribution: four top-level names, no development tools, every entry point
importable."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INSTALLED = {"contact_lookup", "worker", "tasks", "producers"}


def test_the_wheel_installs_four_top_level_names_and_no_dev_tools(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("contact_lookup-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/", 1)[0] for n in names if "/" in n and ".dist-info/" not in n}
    assert top == INSTALLED
    (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
    listed = set(zipfile.ZipFile(wheel).read(top_level).decode().split())
    assert listed == INSTALLED
    assert not [n for n in names if n.startswith(("crmsim/", "localredis/", "tests/", "bench/"))]
    # The contract suite plugin packages import ships with its seed contacts.
    assert {"contact_lookup/testing/contract.py", "contact_lookup/testing/contacts.json"} <= set(
        names
    )


def test_every_declared_connector_entry_point_loads_a_connector() -> None:
    from contact_lookup.connectors.base import Connector
    from contact_lookup.connectors.registry import connector_class, known_crms

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"][
        "contact_lookup.connectors"
    ]
    assert set(known_crms()) >= set(declared)
    for crm in declared:
        cls = connector_class(crm)
        assert issubclass(cls, Connector) and cls.crm == crm


def test_the_image_copies_only_the_installed_packages() -> None:
    copied = {
        line.split()[1]
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.startswith("COPY ") and len(line.split()) == 3 and "." not in line.split()[1]
    }
    assert copied >= INSTALLED and not copied & {"crmsim", "localredis", "tests", "bench"}
