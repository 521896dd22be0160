// DOM building without innerHTML: every value from the API lands in a text node.
const SVG = "http://www.w3.org/2000/svg";

function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "on") for (const [type, fn] of Object.entries(v)) el.addEventListener(type, fn);
    else if (k === "text") el.textContent = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "value" || k === "checked") el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** An HTML element: h("td", {class: "num"}, "12"). */
export const h = (tag, attrs, ...children) => build(document.createElement(tag), attrs, children);

/** An SVG element. */
export const s = (tag, attrs, ...children) => build(document.createElementNS(SVG, tag), attrs, children);

/**
 * A semantic table. columns: [{label, cell(row) -> node|string, num?, wrap?, wide?, head?: node, ariaSort?}];
 * rows: array. An empty list shows `empty` in one full-width cell.
 */
export function table(columns, rows, { caption, empty = "Nothing yet.", rowAttrs } = {}) {
  const head = h("tr", null, columns.map((c) =>
    h("th", { scope: "col", class: c.num ? "num" : null, "aria-sort": c.ariaSort }, c.head || c.label)));
  const body = rows.length
    ? rows.map((r) => h("tr", rowAttrs ? rowAttrs(r) : null,
      columns.map((c) => h("td", { class: [c.num && "num", c.wrap && "wrap", c.wide && "wide"].filter(Boolean).join(" ") || null }, c.cell(r)))))
    : h("tr", null, h("td", { colspan: columns.length, class: "empty" }, empty));
  return h("table", null, caption ? h("caption", null, caption) : null, h("thead", null, head),
    h("tbody", null, body));
}

let fieldIds = 0;

/** A form control with its label above it (label `for` the control, so its name is the label alone). */
export function field(label, control) {
  if (!control.id) control.id = `field-${++fieldIds}`;
  return h("div", { class: "field" }, h("label", { for: control.id }, label), control);
}

/** A labelled figure: label above, value below (and an optional note). */
export const card = (label, value, note) =>
  h("div", { class: "card" }, h("div", { class: "card-label" }, label),
    h("div", { class: "card-value" }, value), note ? h("div", { class: "card-note" }, note) : null);

/**
 * Use against a ceiling as a bar with its text (the text carries the meaning; the colour repeats it).
 * `fmt` formats both amounts. No ceiling: just the amount used. `bare`: the label only for screen readers.
 */
export function meter(label, used, limit, fmt, bare = false) {
  const name = bare ? null : h("span", { class: "meter-label" }, label);
  if (limit === null || limit === undefined) {
    return h("div", { class: "meter-row" }, name, h("span", { class: "meter-text" }, `${fmt(used)} · no ceiling`));
  }
  const ratio = limit > 0 ? used / limit : 1;
  const state = ratio >= 1 ? "over" : ratio >= 0.8 ? "warn" : "ok";
  const fill = h("div", { class: `meter-fill ${state}` });
  fill.style.width = `${Math.min(100, ratio * 100).toFixed(1)}%`;
  const flag = state === "over" ? " · at ceiling" : state === "warn" ? " · over 80%" : "";
  return h("div", { class: "meter-row" }, name,
    h("div", {
      class: "meter", role: "meter", "aria-label": label, "aria-valuemin": 0, "aria-valuemax": limit,
      "aria-valuenow": Math.min(used, limit),
    }, fill),
    h("span", { class: "meter-text" }, `${fmt(used)} of ${fmt(limit)} (${(ratio * 100).toFixed(1)}%)${flag}`));
}

/** A status word with a shape before it, so state never rests on colour alone. */
export const badge = (text, kind) => h("span", { class: `badge ${kind}` }, text);

const rendered = new WeakMap();

/**
 * Replace a container's content only when the data behind it changed. Focus stays on the element with
 * the same `data-focus` key, so live updates do not throw the keyboard user out.
 */
export function update(el, key, render) {
  if (rendered.get(el) === key) return false;
  rendered.set(el, key);
  const active = document.activeElement;
  const focusKey = el.contains(active) ? active.dataset.focus : undefined;
  el.replaceChildren(...[render()].flat(Infinity).filter((n) => n !== null && n !== undefined && n !== false));
  if (focusKey !== undefined) el.querySelector(`[data-focus="${CSS.escape(focusKey)}"]`)?.focus();
  return true;
}
