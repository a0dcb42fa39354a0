// A job's work after training: evaluations (heat map, per-class table, worst examples),
// a small predictions form, and ONNX exports with their files.
"use strict";

const After = (() => {
  const { el, json, fmtNumber, fmtBytes, fmtTime } = Thaw;
  const NS = "http://www.w3.org/2000/svg";
  const PENDING = new Set(["queued", "running"]);
  const $ = (id) => document.getElementById(id);
  let base = null;
  let timer = null;

  const pct = (x) => (typeof x === "number" ? (x * 100).toFixed(1) + "%" : "–");

  function problemBox(error) {
    Thaw.showProblem($("problem"), error);
  }

  function evaluationCard(e) {
    const card = el("article", { class: "evaluation", "data-evaluation": e.id, "data-status": e.status });
    const dataset = e.request.dataset || {};
    card.append(
      el(
        "h3",
        {},
        el("code", {}, e.id),
        " ",
        el("span", { class: "status status-" + e.status }, e.status),
        el("span", { class: "muted" }, " · " + e.checkpoint + " · " + (dataset.id || "validation split") + " · " + fmtTime(e.created_at)),
      ),
    );
    if (e.error) card.append(el("p", { class: "error-text" }, e.error.code + ": " + e.error.message));
    const r = e.result;
    if (!r) return card;
    card.append(
      el("p", { class: "scores" }, "accuracy " + pct(r.accuracy) + " · F1 macro " + fmtNumber(r.f1_macro, 4) + " · F1 weighted " + fmtNumber(r.f1_weighted, 4) + " · " + fmtNumber(r.num_examples) + " examples"),
    );
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("class", "heatmap");
    Heatmap.render(svg, r.classes, r.confusion_matrix);
    const perClass = el(
      "table",
      { class: "list per-class" },
      el("thead", {}, el("tr", {}, ["class", "precision", "recall", "F1", "support"].map((h) => el("th", {}, h)))),
      el(
        "tbody",
        {},
        r.per_class.map((c) =>
          el("tr", { "data-class": c.class }, el("td", {}, c.class), el("td", {}, fmtNumber(c.precision, 3)), el("td", {}, fmtNumber(c.recall, 3)), el("td", {}, fmtNumber(c.f1, 3)), el("td", {}, c.support)),
        ),
      ),
    );
    card.append(el("div", { class: "evaluation-body" }, el("figure", {}, el("figcaption", {}, "Confusion matrix (rows: true class)"), svg), perClass));
    if (r.most_confused.length) {
      card.append(el("p", { class: "muted" }, "Most confused: " + r.most_confused.map((p) => p.true + " → " + p.predicted + " (" + p.count + ")").join(", ")));
    }
    if (r.worst_examples.length) {
      card.append(
        el(
          "details",
          {},
          el("summary", {}, "Worst-predicted examples"),
          el("ol", { class: "worst" }, r.worst_examples.map((w) => el("li", {}, el("code", {}, w.example), " true " + w.true + ", predicted " + w.predicted + " (" + pct(w.confidence) + ")"))),
        ),
      );
    }
    return card;
  }

  function exportRow(x) {
    const files = x.result ? x.result.files : [];
    return el(
      "tr",
      { "data-export": x.id, "data-status": x.status },
      el("td", {}, el("code", {}, x.id)),
      el("td", {}, el("span", { class: "status status-" + x.status }, x.status)),
      el("td", {}, x.checkpoint),
      el("td", {}, x.result ? fmtNumber(x.result.max_abs_diff, 3) : x.error ? x.error.message : "–"),
      el(
        "td",
        {},
        files.map((f) => {
          const url = "/v1/exports/" + encodeURIComponent(x.id) + "/files/" + encodeURIComponent(f.name);
          const link = el("a", { href: url, class: "download", download: f.name }, f.name);
          link.addEventListener("click", (event) => {
            if (!Thaw.apiKey()) return;
            event.preventDefault();
            Thaw.download(url, f.name).catch(problemBox);
          });
          return el("div", { class: "file" }, link, " " + fmtBytes(f.size) + " ", el("code", { class: "sha256", title: "sha256" }, f.sha256));
        }),
      ),
    );
  }

  async function load() {
    const [evaluations, exports] = await Promise.all([json(base + "/evaluations"), json(base + "/exports")]);
    const list = $("evaluations");
    if (evaluations.data.length) list.replaceChildren(...evaluations.data.map(evaluationCard));
    $("exports").querySelector("tbody").replaceChildren(...exports.data.map(exportRow));
    const pending = [...evaluations.data, ...exports.data].some((t) => PENDING.has(t.status));
    clearTimeout(timer);
    if (pending) timer = setTimeout(() => load().catch(problemBox), 1000);
    document.body.dataset.after = pending ? "pending" : "loaded";
  }

  function predictionRows(task) {
    $("predictions").hidden = false;
    $("predictions").querySelector("tbody").replaceChildren(
      ...task.result.predictions.map((p) =>
        el("tr", {}, el("td", {}, String(p.input)), el("td", {}, p.top.map((t) => el("span", { class: "top-class" }, t.class + " " + pct(t.probability))))),
      ),
    );
  }

  function wire() {
    $("evaluate-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const form = event.target;
      const dataset = form.dataset_id.value.trim();
      const body = { checkpoint: form.checkpoint.value.trim() || "best", dataset: dataset ? { id: dataset } : { split: "validation" } };
      try {
        await Thaw.postJson(base + "/evaluations", body);
        await load();
      } catch (error) {
        problemBox(error);
      }
    });
    $("export-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        await Thaw.postJson(base + "/exports", { checkpoint: event.target.checkpoint.value.trim() || "best", format: "onnx" });
        await load();
      } catch (error) {
        problemBox(error);
      }
    });
    $("predict-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const form = event.target;
      const texts = form.texts.value.split("\n").map((t) => t.trim()).filter(Boolean);
      try {
        let task;
        if (form.files.files.length) {
          const body = new FormData();
          for (const file of form.files.files) body.append("files", file, file.name);
          body.append("top_k", "3");
          task = await json(base + "/predictions", { method: "POST", body });
        } else {
          task = await Thaw.postJson(base + "/predictions", { texts, top_k: 3 });
        }
        predictionRows(task);
      } catch (error) {
        problemBox(error);
      }
    });
  }

  function start(jobBase) {
    base = jobBase;
    wire();
    return load().catch(problemBox);
  }

  return { start, load };
})();
