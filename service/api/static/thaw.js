// Shared by the pages: calls to the JSON API (with the API key when the server asks for one),
// the event stream, and small formatting helpers. The key lives in sessionStorage only.
"use strict";

const Thaw = (() => {
  const KEY_ITEM = "thaw.apiKey";

  function apiKey() {
    return sessionStorage.getItem(KEY_ITEM) || "";
  }

  function withKey(headers) {
    const out = Object.assign({}, headers || {});
    const key = apiKey();
    if (key) out.Authorization = "Bearer " + key;
    return out;
  }

  class ApiProblem extends Error {
    constructor(status, body) {
      const detail = body && body.detail ? body.detail : "HTTP " + status;
      super(detail);
      this.status = status;
      this.body = body || {};
      this.title = this.body.title || "Error";
    }
  }

  let pendingPrompt = null;

  // Show the key form and resolve once a key was entered; one prompt for concurrent calls.
  function askForKey(message) {
    if (pendingPrompt) return pendingPrompt;
    pendingPrompt = new Promise((resolve) => {
      const dialog = document.getElementById("key-dialog") || buildKeyDialog();
      dialog.querySelector(".key-message").textContent = message;
      dialog.hidden = false;
      const input = dialog.querySelector("#api-key");
      input.value = "";
      input.focus();
      dialog.querySelector("form").onsubmit = (event) => {
        event.preventDefault();
        sessionStorage.setItem(KEY_ITEM, input.value.trim());
        dialog.hidden = true;
        pendingPrompt = null;
        resolve();
      };
    });
    return pendingPrompt;
  }

  function buildKeyDialog() {
    const dialog = document.createElement("div");
    dialog.id = "key-dialog";
    dialog.className = "overlay";
    dialog.innerHTML =
      '<form class="card"><h2>API key</h2><p class="key-message"></p>' +
      '<input id="api-key" type="password" autocomplete="off" placeholder="key" required>' +
      '<button type="submit" id="key-submit">Use key</button>' +
      '<p class="muted">Kept in this tab (sessionStorage) only.</p></form>';
    document.body.appendChild(dialog);
    return dialog;
  }

  async function request(path, options) {
    const opts = Object.assign({}, options || {});
    for (;;) {
      const response = await fetch(path, Object.assign({}, opts, { headers: withKey(opts.headers) }));
      if (response.status !== 401) return response;
      const body = await response.json().catch(() => null);
      const had = apiKey();
      await askForKey(had ? "That key was refused: " + (body && body.detail) : "This server needs an API key.");
    }
  }

  async function json(path, options) {
    const response = await request(path, options);
    const body = response.status === 204 ? null : await response.json().catch(() => null);
    if (!response.ok) throw new ApiProblem(response.status, body);
    return body;
  }

  function postJson(path, body) {
    return json(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  }

  // Server-sent events of a job through fetch (EventSource cannot send the Authorization header).
  // Calls onEvent(type, event) for each after the event id ``after`` (all when absent);
  // reconnects after the last id until the stream ends.
  async function followEvents(jobId, onEvent, after) {
    let lastId = after || null;
    for (;;) {
      const headers = { Accept: "text/event-stream" };
      if (lastId) headers["Last-Event-ID"] = lastId;
      let ended = false;
      try {
        const response = await request("/v1/jobs/" + encodeURIComponent(jobId) + "/events", { headers });
        if (!response.ok) throw new ApiProblem(response.status, await response.json().catch(() => null));
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const frame = parseFrame(buffer.slice(0, cut));
            buffer = buffer.slice(cut + 2);
            if (frame && frame.data) {
              if (frame.id) lastId = frame.id;
              onEvent(frame.event || "message", JSON.parse(frame.data));
            }
          }
        }
        ended = true;
      } catch (error) {
        if (error instanceof ApiProblem && error.status < 500) throw error;
      }
      if (ended) return;
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }

  function parseFrame(text) {
    const frame = {};
    for (const line of text.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const at = line.indexOf(":");
      const field = at < 0 ? line : line.slice(0, at);
      const value = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
      frame[field] = field === "data" && frame.data ? frame.data + "\n" + value : value;
    }
    return frame;
  }

  // Download a file with the key as a header, then hand the browser a blob.
  async function download(url, filename) {
    const response = await request(url);
    if (!response.ok) throw new ApiProblem(response.status, await response.json().catch(() => null));
    const blob = await response.blob();
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = filename;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      // Through the CSSOM: the pages' Content-Security-Policy refuses style attributes.
      else if (name === "style") node.style.cssText = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function fmtNumber(value, digits) {
    if (value === null || value === undefined || Number.isNaN(value)) return "–";
    if (typeof value !== "number") return String(value);
    if (Number.isInteger(value) && digits === undefined) return value.toLocaleString("en-US");
    return value.toPrecision(digits || 4).replace(/(\.\d*?)0+$/, "$1").replace(/\.$/, "");
  }

  function fmtBytes(size) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let value = size;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return (unit ? value.toFixed(1) : value) + " " + units[unit];
  }

  function fmtTime(iso) {
    if (!iso) return "–";
    const date = new Date(iso);
    return date.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
  }

  function fmtDuration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const s = Math.round(seconds);
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  }

  function fmtMetrics(metrics) {
    const shown = [];
    for (const name of ["val_loss", "val_accuracy", "loss"]) {
      if (metrics && typeof metrics[name] === "number") shown.push(name + " " + fmtNumber(metrics[name]));
    }
    return shown.join(" · ") || "–";
  }

  function showProblem(container, error) {
    container.replaceChildren();
    container.hidden = false;
    if (!(error instanceof ApiProblem)) {
      container.append(el("p", { class: "problem-title" }, String(error)));
      return;
    }
    container.append(el("p", { class: "problem-title" }, error.title + ": " + error.message));
    const errors = error.body.errors || [];
    if (errors.length) {
      container.append(
        el(
          "ul",
          { class: "field-errors" },
          errors.map((item) =>
            el(
              "li",
              { class: "field-error" },
              el("code", { class: "loc" }, item.loc || "request body"),
              " ",
              el("span", { class: "message" }, item.message),
              item.hint ? el("span", { class: "hint" }, " — " + item.hint) : null,
              item.closest && item.closest.length
                ? el("span", { class: "closest" }, " (closest: " + item.closest.join(", ") + ")")
                : null,
            ),
          ),
        ),
      );
    }
  }

  return {
    ApiProblem,
    apiKey,
    request,
    json,
    postJson,
    followEvents,
    download,
    el,
    fmtNumber,
    fmtBytes,
    fmtTime,
    fmtDuration,
    fmtMetrics,
    showProblem,
  };
})();
