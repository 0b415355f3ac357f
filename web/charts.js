// Small SVG charts drawn with the DOM (no library, nothing inline for the CSP to refuse).

const SVG = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== null) node.textContent = text;
  return node;
}

function frame(width, height, label) {
  return svgEl("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label });
}

function niceMax(value) {
  if (value <= 0) return 1;
  const step = 10 ** Math.floor(Math.log10(value));
  return Math.ceil(value / step) * step;
}

export function legend(items) {
  const list = document.createElement("ul");
  list.className = "legend";
  for (const { label, colour } of items) {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.setProperty("background-color", colour);
    item.append(swatch, label);
    list.append(item);
  }
  return list;
}

// Stacked columns: one column per label, one coloured segment per series.
export function stackedColumns({ labels, series, label, width = 720, height = 260 }) {
  const pad = { left: 40, right: 10, top: 10, bottom: 40 };
  const totals = labels.map((_, i) => series.reduce((sum, s) => sum + Math.max(s.values[i], 0), 0));
  const max = niceMax(Math.max(0, ...totals));
  const svg = frame(width, height, label);
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const step = plotW / Math.max(labels.length, 1);
  const barW = Math.max(2, step * 0.7);
  for (const tick of [0, max / 2, max]) {
    const y = pad.top + plotH - (tick / max) * plotH;
    svg.append(svgEl("line", { x1: pad.left, x2: width - pad.right, y1: y, y2: y, stroke: "#d9dee5" }));
    svg.append(svgEl("text", { x: pad.left - 6, y: y + 4, "text-anchor": "end", "font-size": 11, fill: "#5b6573" }, String(tick)));
  }
  labels.forEach((name, i) => {
    let y = pad.top + plotH;
    const x = pad.left + i * step + (step - barW) / 2;
    for (const s of series) {
      const value = Math.max(s.values[i], 0);
      if (!value) continue;
      const h = (value / max) * plotH;
      y -= h;
      const rect = svgEl("rect", { x, y, width: barW, height: h, fill: s.colour, class: "bar" });
      rect.append(svgEl("title", {}, `${name} · ${s.label}: ${value}`));
      svg.append(rect);
    }
    const every = Math.ceil(labels.length / 8);
    if (i % every === 0) {
      svg.append(svgEl("text", { x: x + barW / 2, y: height - pad.bottom + 16, "text-anchor": "middle", "font-size": 11, fill: "#5b6573" }, name));
    }
  });
  return svg;
}

// Horizontal bars in pairs or singles: rows of {label, values: [{value, colour, label}]}.
export function horizontalBars({ rows, label, diverging = false, bound = null, width = 720, labelW = 230 }) {
  const rowH = 26;
  const height = Math.max(rows.length, 1) * rowH + 20;
  const svg = frame(width, height, label);
  const plotW = width - labelW - 60;
  const extent = diverging
    ? Math.max(bound || 0, ...rows.flatMap((r) => r.values.map((v) => Math.abs(v.value)))) || 1
    : niceMax(Math.max(0, ...rows.flatMap((r) => r.values.map((v) => v.value))));
  const zero = diverging ? labelW + plotW / 2 : labelW;
  const scale = diverging ? plotW / 2 / extent : plotW / extent;
  if (diverging) {
    svg.append(svgEl("line", { x1: zero, x2: zero, y1: 0, y2: height - 10, stroke: "#5b6573" }));
  }
  rows.forEach((row, i) => {
    const y = 10 + i * rowH;
    svg.append(svgEl("text", { x: labelW - 8, y: y + rowH / 2 + 4, "text-anchor": "end", "font-size": 12, fill: "#1c2430" }, row.label));
    const barH = (rowH - 8) / row.values.length;
    row.values.forEach((v, j) => {
      const w = Math.abs(v.value) * scale;
      const x = diverging && v.value < 0 ? zero - w : zero;
      const rect = svgEl("rect", { x, y: y + 4 + j * barH, width: Math.max(w, v.value ? 1 : 0), height: barH, fill: v.colour, class: "bar" });
      rect.append(svgEl("title", {}, `${row.label} · ${v.label}: ${v.value}`));
      svg.append(rect);
      svg.append(svgEl("text", { x: (diverging && v.value < 0 ? x - 4 : x + w + 4), y: y + 4 + j * barH + barH - 2, "font-size": 10, fill: "#5b6573", "text-anchor": diverging && v.value < 0 ? "end" : "start" }, String(v.value)));
    });
  });
  return svg;
}
