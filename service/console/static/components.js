// Pieces every page uses: tables that stack on narrow screens, form fields with their
// error next to them, the problem box, state badges, ages.

import { append, clear, h, uid } from "./dom.js";

/** A table whose cells carry their column name, so a narrow screen shows rows as cards. */
export function table(columns, rows, { caption, empty = "Nothing here yet." } = {}) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h("div", { class: "table-wrap" },
    h("table", {},
      caption ? h("caption", {}, caption) : null,
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c.title)))),
      h("tbody", {}, rows.map((row) => h("tr", { dataset: row.key ? { key: row.key } : {} },
        columns.map((c) => h("td", { "data-label": c.title }, c.cell(row))))))));
}

/**
 * A labelled input. ``name`` is the API's field path ("virtualDiskName",
 * "customization.namePrefix"): a field violation with that path shows under it.
 */
export function field({ label, name, control, hint }) {
  const id = control.id || uid("f");
  control.id = id;
  control.name = control.name || name;
  const error = h("p", { class: "field-error", id: `${id}-error`, hidden: true });
  const hintNode = hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null;
  control.setAttribute("aria-describedby", [hintNode ? hintNode.id : "", error.id].filter(Boolean).join(" "));
  return h("div", { class: "field", dataset: { field: name } }, h("label", { for: id }, label), control, hintNode, error);
}

/** Remove the errors a previous attempt left in ``form`` and in ``box``. */
export function clearProblem(box, form) {
  if (box) { clear(box); box.hidden = true; }
  if (!form) return;
  for (const node of form.querySelectorAll(".field-error")) { node.textContent = ""; node.hidden = true; }
  for (const node of form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
}

/**
 * Show an API error: its title and detail in ``box`` (role=alert), each field violation
 * next to its field in ``form`` (or in the box when the form has no such field). The
 * first invalid field gets the focus, for keyboard users.
 */
export function showProblem(box, error, form) {
  clearProblem(box, form);
  const unplaced = [];
  let first = null;
  for (const violation of error.fieldViolations || []) {
    const slot = form && form.querySelector(`[data-field="${CSS.escape(violation.field)}"]`);
    if (!slot) { unplaced.push(violation); continue; }
    const message = slot.querySelector(".field-error");
    message.textContent = violation.description;
    message.hidden = false;
    const control = slot.querySelector("input, select, textarea");
    if (control) { control.setAttribute("aria-invalid", "true"); first = first || control; }
  }
  box.hidden = false;
  append(box, [
    h("p", { class: "problem-title" }, error.title || "The request failed"),
    error.detail && error.detail !== error.title ? h("p", {}, error.detail) : null,
    unplaced.length ? h("ul", {}, unplaced.map((v) => h("li", {}, `${v.field}: ${v.description}`))) : null,
    (error.preconditionViolations || []).length
      ? h("ul", {}, error.preconditionViolations.map((v) => h("li", {}, `${v.subject || v.type}: ${v.description}`)))
      : null,
    error.requestId ? h("p", { class: "muted" }, `request id ${error.requestId}`) : null]);
  if (first) first.focus();
}

/** The box showProblem writes into. */
export function problemBox() {
  return h("div", { class: "problem", role: "alert", hidden: true });
}

const STATE_TONE = {
  SUCCEEDED: "ok", Ready: "ok", SUCCESS: "ok", Completed: "ok", true: "ok",
  FAILED: "bad", Failed: "bad", ERROR: "bad", DENIED: "bad", CANCELLED: "bad", false: "bad", Conflict: "bad",
  RUNNING: "busy", PENDING: "busy", InProgress: "busy", Pending: "busy", Terminating: "busy",
};

/** A word with its tone: green for done, red for failed, blue for in progress. */
export function badge(text) {
  const value = text === undefined || text === null || text === "" ? "—" : String(text);
  return h("span", { class: `badge ${STATE_TONE[value] || "plain"}` }, value);
}

/** "5s", "3m", "2h", "4d", like kubectl's AGE. */
export function age(timestamp, now = Date.now()) {
  if (!timestamp) return "—";
  const seconds = Math.max(0, Math.floor((now - Date.parse(timestamp)) / 1000));
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 172800) return `${Math.floor(seconds / 3600)}h`;
  return `${Math.floor(seconds / 86400)}d`;
}

/** A time as the person's locale shows it, with the exact value on hover. */
export function time(timestamp) {
  if (!timestamp) return "—";
  return h("time", { datetime: timestamp, title: timestamp }, new Date(timestamp).toLocaleString());
}

/** What the console shows for a capability this gateway does not serve yet. */
export function notAvailable(what) {
  return h("p", { class: "unavailable" }, `${what}: not yet available on this gateway.`);
}

/** A page heading that screen readers and the tab title follow. */
export function heading(text) {
  document.title = `${text} · DVP Snapshot Gateway`;
  return h("h1", {}, text);
}
