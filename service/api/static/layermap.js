// The layers x epochs map of a plan (POST /v1/plans) or a job (GET /v1/jobs/{id}/layers):
// one row per layer group, expandable to its layers; one column per epoch.
"use strict";

const LayerMap = (() => {
  const { el, fmtNumber } = Thaw;

  function combine(flags) {
    if (flags.length && flags.every((f) => f === "trainable")) return "trainable";
    if (flags.every((f) => f === "frozen")) return "frozen";
    return "partial";
  }

  function lrText(rows) {
    const lrs = [...new Set(rows.filter((r) => r.trainable !== "frozen" && r.lr !== null && r.lr !== undefined).map((r) => r.lr))];
    return lrs.length ? lrs.map((lr) => fmtNumber(lr, 3)).join(", ") : "–";
  }

  // With freeze.method lora: "on" when an adapter among rows trains, "off" when they all
  // carry frozen ones, null for rows without adapters.
  function adapterState(rows) {
    const carrying = rows.filter((r) => r.adapter);
    if (!carrying.length) return null;
    return carrying.some((r) => r.adapter.trainable) ? "on" : "off";
  }

  function adapterText(rows) {
    const carrying = rows.filter((r) => r.adapter);
    if (!carrying.length) return "";
    const ranks = [...new Set(carrying.map((r) => r.adapter.r))].join(", ");
    const params = carrying.reduce((sum, r) => sum + r.adapter.params, 0);
    const training = carrying.filter((r) => r.adapter.trainable).length;
    const base = rows.some((r) => r.base_trains) ? "; base weights train" : "; base weights frozen";
    return "\nLoRA on " + carrying.length + " layer(s), r " + ranks + ", " + fmtNumber(params) +
      " adapter params, " + training + " training" + base;
  }

  function cell(rows, epoch, label) {
    const state = combine(rows.map((r) => r.trainable));
    const adapter = adapterState(rows);
    const source = epoch.source || "planned";
    const changed = rows.some((r) => r.changed === true);
    const trainable = rows.reduce((sum, r) => sum + r.trainable_params, 0);
    const total = rows.reduce((sum, r) => sum + r.params, 0);
    const modes = [...new Set(rows.map((r) => r.mode))].join("/");
    const title =
      label + " · epoch " + epoch.epoch + " (" + source + ", phase " + epoch.phase + ")\n" +
      "trainable " + fmtNumber(trainable) + " / " + fmtNumber(total) + " params\n" +
      "lr " + lrText(rows) + " · mode " + modes + adapterText(rows) +
      (changed ? "\nweights changed in this epoch" : "");
    return el(
      "td",
      {
        class:
          "cell state-" + state + " source-" + source + (changed ? " changed" : "") +
          (adapter ? " adapter adapter-" + adapter : ""),
        "data-epoch": epoch.epoch,
        "data-trainable": state,
        "data-adapter": adapter,
        "data-source": source,
        "data-lr": lrText(rows),
        title,
      },
      (adapter ? "A" : "") + (changed ? "●" : ""),
    );
  }

  // Render into container; expanded is a Set of group indices kept open across re-renders.
  function render(container, table, expanded) {
    const open = expanded || new Set();
    const epochs = table.epochs || [];
    const groups = table.groups || [];
    const head = el(
      "tr",
      {},
      el("th", { class: "corner" }, "group \\ epoch"),
      epochs.map((e) => el("th", { class: "epoch source-" + (e.source || "planned"), "data-epoch": e.epoch }, e.epoch)),
    );
    const body = [];
    for (const group of groups) {
      const rowsAt = (epoch) => epoch.layers.filter((r) => r.group === group.index);
      const layerNames = epochs.length ? rowsAt(epochs[0]).map((r) => r.name) : [];
      const toggle = el(
        "th",
        { class: "group-name", title: group.modules.join(", ") },
        el("button", { type: "button", class: "expand", "aria-expanded": open.has(group.index) ? "true" : "false" }, open.has(group.index) ? "▾" : "▸"),
        " " + group.name,
        el("span", { class: "muted" }, " (" + layerNames.length + ")"),
      );
      const groupRow = el(
        "tr",
        { class: "group-row", "data-group": group.index, "data-name": group.name },
        toggle,
        epochs.map((e) => cell(rowsAt(e), e, group.name)),
      );
      toggle.querySelector("button").addEventListener("click", () => {
        if (open.has(group.index)) open.delete(group.index);
        else open.add(group.index);
        render(container, table, open);
      });
      body.push(groupRow);
      if (!open.has(group.index)) continue;
      for (const name of layerNames) {
        body.push(
          el(
            "tr",
            { class: "layer-row", "data-group": group.index, "data-name": name },
            el("th", { class: "layer-name" }, name),
            epochs.map((e) => cell(e.layers.filter((r) => r.name === name), e, name)),
          ),
        );
      }
    }
    const legend = el(
      "p",
      { class: "legend" },
      el("span", { class: "swatch state-trainable source-recorded" }), " trainable ",
      el("span", { class: "swatch state-partial source-recorded" }), " partly ",
      el("span", { class: "swatch state-frozen source-recorded" }), " frozen ",
      el("span", { class: "swatch state-trainable source-planned" }), " planned (not yet recorded) ",
      epochs.some((e) => e.layers.some((r) => r.adapter)) ? [el("span", { class: "swatch adapter adapter-on" }), " A LoRA adapters (outlined: training) "] : [],
      "● weights changed in that epoch · hover a cell for its lr",
    );
    container.replaceChildren(el("table", { class: "layer-map" }, el("thead", {}, head), el("tbody", {}, body)), legend);
  }

  // Consecutive epochs with the same phase, with the groups trainable in each.
  function phases(table) {
    const out = [];
    for (const epoch of table.epochs || []) {
      const last = out[out.length - 1];
      if (last && last.phase === epoch.phase) {
        last.to = epoch.epoch;
        continue;
      }
      const trainable = (table.groups || [])
        .filter((g) => epoch.layers.some((r) => r.group === g.index && r.trainable !== "frozen"))
        .map((g) => g.name);
      out.push({ phase: epoch.phase, from: epoch.epoch, to: epoch.epoch, trainable, params: epoch.trainable_params, total: epoch.total_params });
    }
    return out;
  }

  return { render, phases };
})();
