// A small inline-SVG line chart: series of [x, y] points, vertical markers on the x axis.
"use strict";

const Chart = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const W = 560;
  const H = 220;
  const PAD = { left: 52, right: 12, top: 12, bottom: 34 };

  function svgEl(tag, attrs, text) {
    const node = document.createElementNS(NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function extent(values, fallback) {
    if (!values.length) return fallback;
    let lo = Math.min(...values);
    let hi = Math.max(...values);
    if (lo === hi) {
      lo -= Math.abs(lo) * 0.1 || 0.5;
      hi += Math.abs(hi) * 0.1 || 0.5;
    }
    return [lo, hi];
  }

  function ticks(lo, hi, count) {
    return Array.from({ length: count + 1 }, (_, i) => lo + ((hi - lo) * i) / count);
  }

  // series: [{name, cls, points: [[x, y], ...]}]; markers: [{x, label}]; xMax: right edge.
  function render(svg, { series, markers, xMax, xLabel }) {
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    svg.replaceChildren();
    const points = series.flatMap((s) => s.points);
    const [x0, x1] = [0, Math.max(xMax || 0, ...points.map((p) => p[0]), 1)];
    const [y0, y1] = extent(points.map((p) => p[1]), [0, 1]);
    const sx = (x) => PAD.left + ((x - x0) / (x1 - x0)) * (W - PAD.left - PAD.right);
    const sy = (y) => H - PAD.bottom - ((y - y0) / (y1 - y0)) * (H - PAD.top - PAD.bottom);

    const axes = svgEl("g", { class: "axes" });
    axes.append(svgEl("line", { x1: PAD.left, y1: H - PAD.bottom, x2: W - PAD.right, y2: H - PAD.bottom }));
    axes.append(svgEl("line", { x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: H - PAD.bottom }));
    for (const y of ticks(y0, y1, 4)) {
      axes.append(svgEl("text", { x: PAD.left - 6, y: sy(y) + 4, "text-anchor": "end" }, Thaw.fmtNumber(y, 3)));
      axes.append(svgEl("line", { class: "grid", x1: PAD.left, y1: sy(y), x2: W - PAD.right, y2: sy(y) }));
    }
    for (let x = Math.ceil(x0); x <= x1; x += Math.max(1, Math.round(x1 / 10))) {
      axes.append(svgEl("text", { x: sx(x), y: H - PAD.bottom + 16, "text-anchor": "middle" }, x));
    }
    axes.append(svgEl("text", { x: (W + PAD.left) / 2, y: H - 4, "text-anchor": "middle", class: "axis-label" }, xLabel || "epoch"));
    svg.append(axes);

    for (const marker of markers || []) {
      const g = svgEl("g", { class: "thaw-marker" });
      g.append(svgEl("line", { x1: sx(marker.x), y1: PAD.top, x2: sx(marker.x), y2: H - PAD.bottom }));
      g.append(svgEl("text", { x: sx(marker.x) + 4, y: PAD.top + 10 }, marker.label));
      g.append(svgEl("title", {}, marker.title || marker.label));
      svg.append(g);
    }

    series.forEach((s, i) => {
      const g = svgEl("g", { class: "series " + s.cls, "data-series": s.name });
      if (s.points.length > 1) {
        g.append(svgEl("polyline", { points: s.points.map((p) => sx(p[0]) + "," + sy(p[1])).join(" ") }));
      }
      for (const [x, y] of s.points) {
        const dot = svgEl("circle", { class: "pt", cx: sx(x), cy: sy(y), r: s.points.length > 60 ? 1.5 : 3 });
        dot.append(svgEl("title", {}, s.name + " " + Thaw.fmtNumber(y) + " at " + Thaw.fmtNumber(x, 3)));
        g.append(dot);
      }
      g.append(svgEl("text", { class: "series-name", x: W - PAD.right - 4, y: PAD.top + 12 + 14 * i, "text-anchor": "end" }, s.name));
      svg.append(g);
    });
  }

  return { render };
})();
