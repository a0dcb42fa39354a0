// The tenant's jobs, newest first, polled while the page is open.
"use strict";

(() => {
  const { el, json, fmtTime, fmtMetrics } = Thaw;
  const POLL_MS = 2000;

  function row(job) {
    const fraction = job.status === "succeeded" ? 1 : (job.progress && job.progress.fraction) || 0;
    const epoch = job.progress && job.progress.epoch ? " · epoch " + job.progress.epoch + "/" + job.progress.epochs : "";
    return el(
      "tr",
      { "data-job-id": job.id, "data-status": job.status },
      el("td", {}, el("a", { href: "/ui/jobs/" + encodeURIComponent(job.id) }, job.name || job.id), el("div", { class: "muted" }, el("code", {}, job.id))),
      el("td", {}, el("span", { class: "status status-" + job.status }, job.status)),
      el(
        "td",
        { class: "progress-cell" },
        el("div", { class: "progress" }, el("div", { class: "bar", style: "width:" + (fraction * 100).toFixed(1) + "%" })),
        (fraction * 100).toFixed(0) + "%" + epoch,
      ),
      el("td", {}, job.error ? el("span", { class: "error-text" }, job.error.code) : fmtMetrics(job.metrics)),
      el("td", {}, fmtTime(job.created_at)),
    );
  }

  async function poll() {
    const problem = document.getElementById("problem");
    try {
      const page = await json("/v1/jobs?limit=100");
      document.querySelector("#jobs tbody").replaceChildren(...page.data.map(row));
      document.getElementById("empty").hidden = page.data.length > 0;
      document.getElementById("updated").textContent = "Updated " + new Date().toLocaleTimeString() + ".";
      problem.hidden = true;
    } catch (error) {
      Thaw.showProblem(problem, error);
    }
    setTimeout(poll, POLL_MS);
  }

  poll();
})();
