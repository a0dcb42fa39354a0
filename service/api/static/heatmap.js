// A confusion-matrix heat map in plain SVG: rows are true classes, columns predicted ones;
// a cell's shade is its share of the row (recall for the diagonal), its text the count.
"use strict";

const Heatmap = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const LABEL = 64;
  const TOP = 28;
  const MAX_SIZE = 520;

  function svgEl(tag, attrs, text) {
    const node = document.createElementNS(NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function short(name) {
    return name.length > 9 ? name.slice(0, 8) + "…" : name;
  }

  // classes: [name]; matrix: [[count]] with matrix[true][predicted].
  function render(svg, classes, matrix) {
    const n = classes.length;
    const cell = Math.max(4, Math.min(40, Math.floor(MAX_SIZE / Math.max(n, 1))));
    const width = LABEL + n * cell + 8;
    const height = TOP + n * cell + LABEL;
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    svg.setAttribute("width", width);
    svg.replaceChildren();
    const showText = cell >= 22;
    const showLabels = cell >= 12;
    svg.append(svgEl("text", { x: LABEL + (n * cell) / 2, y: 12, "text-anchor": "middle", class: "axis-label" }, "predicted"));
    svg.append(svgEl("text", { x: 10, y: TOP + (n * cell) / 2, "text-anchor": "middle", class: "axis-label", transform: "rotate(-90 10 " + (TOP + (n * cell) / 2) + ")" }, "true"));
    matrix.forEach((row, t) => {
      const total = row.reduce((a, b) => a + b, 0);
      if (showLabels) {
        svg.append(svgEl("text", { x: LABEL - 4, y: TOP + t * cell + cell / 2 + 4, "text-anchor": "end", class: "class-label" }, short(classes[t])));
      }
      row.forEach((count, p) => {
        const share = total ? count / total : 0;
        const rect = svgEl("rect", {
          class: "cell" + (t === p ? " diagonal" : ""),
          x: LABEL + p * cell,
          y: TOP + t * cell,
          width: cell - 1,
          height: cell - 1,
          "fill-opacity": (0.06 + 0.94 * share).toFixed(3),
          "data-true": classes[t],
          "data-predicted": classes[p],
          "data-count": count,
        });
        rect.append(svgEl("title", {}, "true " + classes[t] + ", predicted " + classes[p] + ": " + count + (total ? " (" + (share * 100).toFixed(1) + "% of the row)" : "")));
        svg.append(rect);
        if (showText && count) {
          svg.append(svgEl("text", { x: LABEL + p * cell + cell / 2, y: TOP + t * cell + cell / 2 + 4, "text-anchor": "middle", class: share > 0.5 ? "count light" : "count" }, count));
        }
      });
    });
    if (showLabels) {
      classes.forEach((name, p) => {
        const x = LABEL + p * cell + cell / 2;
        const y = TOP + n * cell + 6;
        svg.append(svgEl("text", { x, y, "text-anchor": "end", class: "class-label", transform: "rotate(-60 " + x + " " + y + ")" }, short(name)));
      });
    }
  }

  return { render };
})();
