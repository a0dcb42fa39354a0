"""The plan page's layers x epochs map marks the layer groups and layers that carry LoRA
adapters, and whether those adapters train in each epoch."""

from __future__ import annotations

import json
from typing import Any

from api_fixtures import ApiServer, job_body


def _adapters(page: Any, selector: str) -> list[str | None]:
    return page.locator(f"{selector} td.cell").evaluate_all(
        "cs => cs.map(c => c.dataset.adapter || null)"
    )


def test_plan_page_shows_adapter_layers_and_when_they_train(page, api: ApiServer) -> None:
    spec = job_body(
        freeze={
            "method": "lora",
            "default": "frozen",
            "adapter": {"r": 4, "targets": ["layer3", "layer4"]},
            "rules": [{"match": "layer4", "trainable": True}],
        },
        schedule=[{"at_epoch": 2, "unfreeze": ["layer3"]}],
    )
    page.goto(f"{api.url}/ui/plan")
    page.fill("#spec", json.dumps(spec))
    page.click("#plan")
    page.locator("tr.group-row").first.wait_for()
    assert _adapters(page, 'tr.group-row[data-name="layer4"]') == ["on", "on", "on"]
    assert _adapters(page, 'tr.group-row[data-name="layer3"]') == ["off", "on", "on"]
    assert _adapters(page, 'tr.group-row[data-name="stem"]') == [None, None, None]
    assert _adapters(page, 'tr.group-row[data-name="fc"]') == [None, None, None]
    cell = page.locator('tr.group-row[data-name="layer3"] td.cell').first
    assert "LoRA on 5 layer(s), r 4" in cell.get_attribute("title")
    assert "base weights frozen" in cell.get_attribute("title")
    page.click('tr.group-row[data-name="layer4"] button.expand')
    assert _adapters(page, 'tr.layer-row[data-name="layer4.0.conv1"]') == ["on"] * 3
    assert _adapters(page, 'tr.layer-row[data-name="layer4.0.bn1"]') == [None] * 3
    assert "LoRA adapters" in page.locator(".legend").inner_text()
