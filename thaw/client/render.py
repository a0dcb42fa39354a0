"""Terminal text for jobs, events and the per-layer trainable status."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

TRAINABLE_MARK = {"trainable": "#", "partial": "+", "frozen": "."}


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in headers], *[["" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def metrics_text(metrics: dict[str, Any] | None) -> str:
    shown = [
        f"{name} {metrics[name]:.4g}"
        for name in ("val_loss", "val_accuracy")
        if metrics and isinstance(metrics.get(name), int | float)
    ]
    return " ".join(shown) or "-"


def jobs_table(jobs: Sequence[dict[str, Any]]) -> str:
    rows = []
    for job in jobs:
        progress = job.get("progress") or {}
        fraction = 1.0 if job["status"] == "succeeded" else progress.get("fraction") or 0.0
        rows.append(
            [
                job["id"],
                job.get("name") or "",
                job["status"],
                f"{fraction:.0%}",
                job["error"]["code"] if job.get("error") else metrics_text(job.get("metrics")),
                job["created_at"],
            ]
        )
    return table(["ID", "NAME", "STATUS", "PROGRESS", "METRICS", "CREATED"], rows)


def _combined(flags: Sequence[str]) -> str:
    if flags and all(f == "trainable" for f in flags):
        return "trainable"
    if all(f == "frozen" for f in flags):
        return "frozen"
    return "partial"


def layer_map(status: dict[str, Any]) -> str:
    """One row per layer group, one column per epoch: ``#`` trainable, ``+`` partly, ``.``
    frozen; a planned (not yet recorded) epoch is marked ``*`` in the header."""
    epochs = status["epochs"]
    headers = ["GROUP"] + [
        f"{e['epoch']}{'' if e.get('source') == 'recorded' else '*'}" for e in epochs
    ]
    rows = []
    for group in status["groups"]:
        row = [group["name"]]
        for epoch in epochs:
            flags = [r["trainable"] for r in epoch["layers"] if r["group"] == group["index"]]
            row.append(TRAINABLE_MARK[_combined(flags)])
        rows.append(row)
    legend = "# trainable  + partly  . frozen"
    if any(e.get("source") != "recorded" for e in epochs):
        legend += "  * planned, not yet recorded"
    return table(headers, rows) + "\n" + legend


def epoch_layers(entry: dict[str, Any]) -> str:
    rows = [
        [
            r["name"],
            r["type"],
            r["group"],
            r["trainable"],
            f"{r['trainable_params']}/{r['params']}",
            "-" if r.get("lr") is None else f"{r['lr']:.3g}",
            r["mode"],
            "" if r.get("changed") is None else ("yes" if r["changed"] else "no"),
        ]
        for r in entry["layers"]
    ]
    head = (
        f"epoch {entry['epoch']} ({entry.get('source', 'planned')}), phase {entry['phase']}: "
        f"{entry['trainable_params']:,} of {entry['total_params']:,} params trainable"
    )
    cols = ["LAYER", "TYPE", "GROUP", "TRAINABLE", "PARAMS", "LR", "MODE", "CHANGED"]
    return head + "\n" + table(cols, rows)


def event_line(event: dict[str, Any]) -> str:
    data = json.dumps(event.get("data", {}), separators=(",", ":"), ensure_ascii=False)
    return f"{event['time']} {event['type']:<10} {event['level']:<7} {data}"


def evaluation_text(result: dict[str, Any]) -> str:
    """Scores, the per-class table, the confusion matrix and the most confused pairs."""
    lines = [
        f"accuracy {result['accuracy']:.4f}  f1 macro {result['f1_macro']:.4f}  "
        f"f1 weighted {result['f1_weighted']:.4f}  ({result['num_examples']} examples)",
        "",
        table(
            ["CLASS", "PRECISION", "RECALL", "F1", "SUPPORT"],
            [
                [c["class"], f"{c['precision']:.4f}", f"{c['recall']:.4f}", f"{c['f1']:.4f}",
                 c["support"]]
                for c in result["per_class"]
            ],
        ),
        "",
        "confusion matrix (rows: true class, columns: predicted)",
        table(
            ["", *result["classes"]],
            [[name, *row] for name, row in zip(result["classes"], result["confusion_matrix"],
                                                 strict=True)],
        ),
    ]  # fmt: skip
    if result.get("most_confused"):
        lines += ["", "most confused"]
        lines += [
            f"  {p['true']} taken for {p['predicted']}: {p['count']}"
            for p in result["most_confused"]
        ]
    return "\n".join(lines)


def predictions_text(rows: Sequence[dict[str, Any]]) -> str:
    return table(
        ["INPUT", "TOP CLASSES"],
        [
            [r["input"], ", ".join(f"{t['class']} {t['probability']:.3f}" for t in r["top"])]
            for r in rows
        ],
    )


def webhooks_table(hooks: Sequence[dict[str, Any]]) -> str:
    rows = [[h["id"], h["url"], ",".join(h["events"]), h["created_at"]] for h in hooks]
    return table(["ID", "URL", "EVENTS", "CREATED"], rows)


def deliveries_table(deliveries: Sequence[dict[str, Any]]) -> str:
    rows = [
        [
            d["created_at"],
            d["type"],
            d["job_id"],
            d["status"],
            d["attempts"],
            d["response_status"],
            d["error"] or "",
        ]
        for d in deliveries
    ]
    return table(["CREATED", "TYPE", "JOB", "STATUS", "TRIES", "ANSWER", "ERROR"], rows)
