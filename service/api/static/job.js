// A job: status, progress, curves drawn from the stored events and then fed by the event
// stream while the job runs, the layers x epochs map, the phases and the checkpoints.
"use strict";

(() => {
  const { el, json, fmtNumber, fmtBytes, fmtTime, fmtDuration, fmtMetrics } = Thaw;
  const jobId = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
  const base = "/v1/jobs/" + encodeURIComponent(jobId);
  const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

  const state = {
    job: null,
    table: null,
    stepsPerEpoch: null,
    epochs: null,
    trainLoss: [],
    valLoss: new Map(),
    valAccuracy: new Map(),
    thaws: [],
    plateaus: new Map(),
    expanded: new Set(),
  };

  const $ = (id) => document.getElementById(id);

  function showJob(job) {
    state.job = job;
    if (!state.epochs && job.spec && job.spec.hyperparameters) state.epochs = job.spec.hyperparameters.epochs;
    document.title = "Thaw · " + (job.name || job.id);
    $("job-name").textContent = job.name || job.id;
    $("job-id").textContent = job.id;
    const badge = $("job-status");
    badge.textContent = job.status + (job.cancel_requested && !TERMINAL.has(job.status) ? " (cancelling)" : "");
    badge.className = "status status-" + job.status;
    $("job-created").textContent = fmtTime(job.created_at);
    $("job-attempts").textContent = job.attempts + " / " + job.max_attempts;
    const model = job.spec && job.spec.base_model;
    $("job-model").textContent = model ? model.source + ":" + model.name : "";
    showProgress(job.progress || {});
    $("job-metrics").textContent = fmtMetrics(job.metrics);
    $("cancel").hidden = TERMINAL.has(job.status);
    const error = $("job-error");
    error.hidden = !job.error;
    if (job.error) {
      error.replaceChildren(el("p", { class: "problem-title" }, "Failed: " + job.error.code), el("p", {}, job.error.message));
    }
    showSteering();
  }

  // Why the run stopped before its last epoch, and which phases a plateau started.
  function showSteering() {
    const items = [...state.plateaus.values()]
      .sort((a, b) => a.phase - b.phase)
      .map((p) =>
        el(
          "li",
          { class: "plateau", "data-phase": p.phase, "data-epoch": p.epoch },
          "Plateau thaw: phase " + p.phase + " began with epoch " + p.epoch + " (" + p.monitor + " stalled at " + fmtNumber(p.value, 4) + ")",
        ),
      );
    const stopped = state.job && state.job.stopped_early;
    if (stopped) {
      items.push(el("li", { class: "stopped-early", "data-epoch": stopped.epoch }, "Stopped early after epoch " + stopped.epoch + ": " + stopped.reason));
    }
    $("steering").replaceChildren(...items);
    $("steering").hidden = items.length === 0;
  }

  function showProgress(progress) {
    const fraction = state.job && state.job.status === "succeeded" ? 1 : progress.fraction || 0;
    $("progress-bar").style.width = (fraction * 100).toFixed(1) + "%";
    const parts = [(fraction * 100).toFixed(0) + "%"];
    if (progress.epoch) parts.push("epoch " + progress.epoch + " / " + progress.epochs);
    if (progress.step !== undefined) parts.push("step " + progress.step + " / " + progress.total_steps);
    if (progress.samples_per_s) parts.push(fmtNumber(progress.samples_per_s, 3) + " samples/s");
    $("progress-text").textContent = parts.join(" · ");
    const running = state.job && state.job.status === "running";
    $("eta").textContent = running ? fmtDuration(progress.eta_s) : "–";
  }

  function groupOf(name) {
    if (!state.table) return null;
    for (const group of state.table.groups) {
      if (group.modules.some((m) => name === m || name.startsWith(m + "."))) return group.name;
    }
    return null;
  }

  function thawLabel(event) {
    const groups = [...new Set(event.thawed.map(groupOf).filter(Boolean))];
    const why = state.plateaus.has(event.phase) ? " (plateau)" : "";
    if (groups.length) return "thaw " + groups.join(", ") + why;
    if (event.thawed_count) return "phase " + event.phase + ": +" + event.thawed_count + why;
    return "phase " + event.phase + why;
  }

  let drawQueued = false;
  function drawCharts() {
    if (drawQueued) return;
    drawQueued = true;
    requestAnimationFrame(() => {
      drawQueued = false;
      const spe = state.stepsPerEpoch;
      const markers = spe
        ? state.thaws.map((t) => ({
            x: t.step / spe,
            label: thawLabel(t),
            title: "phase " + t.phase + " at step " + t.step + ": " + t.thawed_count + " params thawed, " + t.frozen_count + " frozen",
          }))
        : [];
      const byEpoch = (map) => [...map.entries()].sort((a, b) => a[0] - b[0]);
      Chart.render($("loss-chart"), {
        series: [
          { name: "train loss", cls: "train-loss", points: spe ? state.trainLoss.map(([s, y]) => [s / spe, y]) : [] },
          { name: "val loss", cls: "val-loss", points: byEpoch(state.valLoss) },
        ],
        markers,
        xMax: state.epochs,
      });
      Chart.render($("accuracy-chart"), {
        series: [{ name: "val accuracy", cls: "val-accuracy", points: byEpoch(state.valAccuracy) }],
        markers,
        xMax: state.epochs,
      });
    });
  }

  // replayed: a stored event loaded with the page, not news that calls for a refresh.
  function onEvent(type, event, replayed) {
    const data = event.data || {};
    if (type === "progress") {
      if (data.total_steps && data.epochs) {
        state.stepsPerEpoch = data.total_steps / data.epochs;
        state.epochs = data.epochs;
      }
      if (typeof data.loss === "number") state.trainLoss.push([data.step, data.loss]);
      if (state.job && !TERMINAL.has(state.job.status)) showProgress(data);
      drawCharts();
    } else if (type === "metrics") {
      if (typeof data.val_loss === "number") state.valLoss.set(data.epoch, data.val_loss);
      if (typeof data.val_accuracy === "number") state.valAccuracy.set(data.epoch, data.val_accuracy);
      drawCharts();
      if (!replayed) refreshSoon();
    } else if (type === "phase") {
      state.thaws = state.thaws.filter((t) => t.phase !== data.phase).concat([data]);
      drawCharts();
      if (!replayed) refreshSoon();
    } else if (type === "plateau") {
      state.plateaus.set(data.phase, data);
      showSteering();
      showPhases();
      drawCharts();
      if (!replayed) refreshSoon();
    } else if (type === "status" || type === "checkpoint" || type === "stopped_early") {
      if (!replayed) refreshSoon();
    }
  }

  // Every stored event, page by page, drawn at once; the id of the last one.
  async function loadHistory() {
    let after = null;
    for (;;) {
      const query = after ? "&after=" + encodeURIComponent(after) : "";
      const page = await json(base + "/events?limit=100" + query);
      for (const event of page.data) onEvent(event.type, event, true);
      if (page.data.length) after = page.data[page.data.length - 1].id;
      if (!page.has_more || !page.data.length) return after;
    }
  }

  async function loadLayers() {
    try {
      state.table = await json(base + "/layers");
    } catch (error) {
      if (error.status === 404 && error.body.code === "layers_not_found") return;
      throw error;
    }
    LayerMap.render($("layer-map"), state.table, state.expanded);
    showPhases();
    drawCharts();
  }

  function showPhases() {
    if (!state.table) return;
    $("phases").replaceChildren(
      ...LayerMap.phases(state.table).map((p) =>
        el(
          "li",
          { "data-phase": p.phase },
          el("strong", {}, "phase " + p.phase),
          " · epochs " + p.from + (p.to !== p.from ? "–" + p.to : ""),
          state.plateaus.has(p.phase) ? el("span", { class: "tag" }, "plateau") : null,
          " · trains " + (p.trainable.join(", ") || "nothing"),
          el("span", { class: "muted" }, " (" + fmtNumber(p.params) + " of " + fmtNumber(p.total) + " params)"),
        ),
      ),
    );
  }

  // A download link that sends the API key as a header when one is set.
  function keyedDownload(link, url, filename) {
    link.href = url;
    link.download = filename;
    link.addEventListener("click", (event) => {
      if (!Thaw.apiKey()) return;
      event.preventDefault();
      Thaw.download(url, filename).catch((error) => Thaw.showProblem($("problem"), error));
    });
    return link;
  }

  keyedDownload($("metrics-csv"), base + "/metrics?format=csv", jobId + "-metrics.csv");
  keyedDownload($("metrics-json"), base + "/metrics?format=json", jobId + "-metrics.json");
  keyedDownload($("tensorboard"), base + "/tensorboard", jobId + "-tensorboard.tar.gz");

  async function loadCheckpoints() {
    const list = await json(base + "/checkpoints");
    $("checkpoints").querySelector("tbody").replaceChildren(
      ...list.data.map((c) =>
        el(
          "tr",
          { "data-checkpoint": c.name },
          el("td", {}, c.name, c.best ? el("span", { class: "tag" }, "best") : null, c.last ? el("span", { class: "tag" }, "last") : null),
          el("td", {}, c.epoch),
          el("td", {}, c.step),
          el("td", {}, fmtMetrics(c.metrics)),
          el(
            "td",
            {},
            c.files.map((f) => {
              const url = base + "/checkpoints/" + encodeURIComponent(c.name) + "/" + encodeURIComponent(f.name);
              const link = keyedDownload(el("a", { class: "download" }, f.name), url, f.name);
              return el("div", { class: "file" }, link, " " + fmtBytes(f.size) + " ", el("code", { class: "sha256", title: "sha256" }, f.sha256));
            }),
          ),
        ),
      ),
    );
  }

  async function refresh() {
    try {
      showJob(await json(base));
      await Promise.all([loadLayers(), loadCheckpoints()]);
    } catch (error) {
      Thaw.showProblem($("problem"), error);
    }
  }

  let refreshTimer = null;
  function refreshSoon() {
    if (refreshTimer) return;
    refreshTimer = setTimeout(() => {
      refreshTimer = null;
      refresh();
    }, 300);
  }

  $("cancel").addEventListener("click", async () => {
    try {
      showJob(await json(base + "/cancel", { method: "POST" }));
    } catch (error) {
      Thaw.showProblem($("problem"), error);
    }
  });

  async function main() {
    await refresh();
    if (!state.job) return;
    After.start(base);
    try {
      const last = await loadHistory();
      document.body.dataset.history = "loaded";
      if (!TERMINAL.has(state.job.status)) {
        await Thaw.followEvents(jobId, onEvent, last);
        await refresh();
      }
    } catch (error) {
      Thaw.showProblem($("problem"), error);
    }
    document.body.dataset.stream = "ended";
  }

  main();
})();
