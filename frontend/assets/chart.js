// Small SVG charts drawn by hand: grouped vertical bars and horizontal bars. Each chart is an <svg
// role="img"> with a text summary, and the same numbers are given in a visually hidden table so a
// screen reader can read the values rather than the shapes.

const NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function niceMax(value) {
  if (value <= 5) return 5;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

function dataTable(caption, head, rows) {
  const table = document.createElement("table");
  table.className = "visually-hidden";
  const cap = document.createElement("caption");
  cap.textContent = caption;
  table.append(cap);
  const tr = document.createElement("tr");
  for (const h of head) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = h;
    tr.append(th);
  }
  table.append(tr);
  for (const row of rows) {
    const line = document.createElement("tr");
    for (const cell of row) {
      const td = document.createElement("td");
      td.textContent = String(cell);
      line.append(td);
    }
    table.append(line);
  }
  return table;
}

/**
 * Grouped vertical bars. `categories`: x labels; `series`: [{name, values, className}].
 * Replaces the content of `container`.
 */
export function barChart(container, { title, categories, series, height = 180 }) {
  const width = Math.max(280, categories.length * (series.length * 14 + 18) + 48);
  const left = 34, bottom = 26, top = 10;
  const plotH = height - bottom - top;
  const max = niceMax(Math.max(1, ...series.flatMap((s) => s.values)));
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", class: "chart", preserveAspectRatio: "xMinYMin meet" });
  const total = series.map((s) => `${s.name} ${s.values.reduce((a, b) => a + b, 0)}`).join(", ");
  root.append(svg("title", {}, `${title}: ${total}`));
  for (const fraction of [0, 0.5, 1]) {
    const y = top + plotH - fraction * plotH;
    root.append(svg("line", { x1: left, x2: width - 4, y1: y, y2: y, class: "grid" }));
    root.append(svg("text", { x: left - 6, y: y + 4, "text-anchor": "end", class: "axis" }, String(Math.round(max * fraction))));
  }
  const groupW = (width - left - 8) / categories.length;
  const barW = Math.min(18, (groupW - 8) / series.length);
  categories.forEach((category, i) => {
    const x0 = left + i * groupW + (groupW - barW * series.length) / 2;
    series.forEach((s, j) => {
      const value = s.values[i] || 0;
      const h = (value / max) * plotH;
      const bar = svg("rect", { x: x0 + j * barW, y: top + plotH - h, width: Math.max(1, barW - 2), height: Math.max(0, h), class: `bar ${s.className || ""}` });
      bar.append(svg("title", {}, `${category}: ${s.name} ${value}`));
      root.append(bar);
    });
    root.append(svg("text", { x: left + i * groupW + groupW / 2, y: height - 8, "text-anchor": "middle", class: "axis" }, category));
  });
  const legend = document.createElement("ul");
  legend.className = "legend";
  legend.setAttribute("aria-hidden", "true");
  for (const s of series) {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = `swatch ${s.className || ""}`;
    item.append(swatch, document.createTextNode(s.name));
    legend.append(item);
  }
  const rows = categories.map((c, i) => [c, ...series.map((s) => s.values[i] || 0)]);
  container.replaceChildren(root, legend, dataTable(title, ["", ...series.map((s) => s.name)], rows));
}

/** Horizontal bars, one per row: [{label, value, note}]. */
export function hbarChart(container, { title, rows, format = (v) => String(v) }) {
  const list = document.createElement("ul");
  list.className = "hbars";
  const max = Math.max(1, ...rows.map((r) => r.value));
  for (const row of rows) {
    const item = document.createElement("li");
    const label = document.createElement("span");
    label.className = "hbar-label";
    label.textContent = row.label;
    const track = document.createElement("span");
    track.className = "hbar-track";
    track.setAttribute("aria-hidden", "true");
    const fill = document.createElement("span");
    fill.className = `hbar-fill ${row.className || ""}`;
    fill.style.width = `${(row.value / max) * 100}%`;
    track.append(fill);
    const value = document.createElement("span");
    value.className = "hbar-value";
    value.textContent = format(row.value) + (row.note ? ` ${row.note}` : "");
    item.append(label, track, value);
    list.append(item);
  }
  list.setAttribute("aria-label", title);
  container.replaceChildren(list);
}
