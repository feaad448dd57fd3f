// Operations: the list (#/operations?ns=&type=&state=&actor=), filtered and paged, its
// first page refreshed every 2 s while it is open (there is no watch of every operation);
// and one operation (#/operations/{id}): its facts, timeline, conditions, warnings, results
// and error, followed live through its :watch stream until it is done, with Cancel.

import { call, idempotencyKey, stream } from "../api.js";
import { age, badge, clearProblem, field, heading, notAvailable, problemBox, showProblem, table, time }
  from "../components.js";
import { clear, h, pause, useStylesheet } from "../dom.js";

const TYPES = ["CREATE_DISK_SNAPSHOT", "DELETE_DISK_SNAPSHOT", "CREATE_VM_SNAPSHOT", "DELETE_VM_SNAPSHOT",
               "RESTORE_DISK", "RESTORE_VM", "CLONE_VM", "CREATE_VM_FROM_SNAPSHOT", "EXPORT_DISK",
               "EXPORT_DISK_SNAPSHOT"];
const STATES = ["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"];
const REFRESH_MS = 2000;
const RETRY_DELAYS = [500, 1000, 2000, 5000, 10000];
// The list's filters: hash query key -> the API's query parameter (also the field's name).
const FILTERS = { ns: "namespace", type: "type", state: "state", actor: "actor" };
const PAGE_SIZES = ["10", "25", "50", "100"];
const DEFAULT_PAGE_SIZE = "25";

function pageSizeOf(params) {
  const value = params.get("pageSize") || DEFAULT_PAGE_SIZE;
  return /^[1-9][0-9]{0,2}$/.test(value) ? value : DEFAULT_PAGE_SIZE;
}

function opLink(op, text) {
  return h("a", { href: `#/operations/${encodeURIComponent(op.id)}` }, text);
}

function refText(ref) {
  if (!ref || !ref.name) return "—";
  return `${ref.kind ? `${ref.kind} ` : ""}${ref.namespace ? `${ref.namespace}/` : ""}${ref.name}`;
}

const TYPE_LABELS = {
  CREATE_DISK_SNAPSHOT: "Create disk snapshot", DELETE_DISK_SNAPSHOT: "Delete disk snapshot",
  CREATE_VM_SNAPSHOT: "Create VM snapshot", DELETE_VM_SNAPSHOT: "Delete VM snapshot",
  RESTORE_DISK: "Restore disk", RESTORE_VM: "Restore VM", CLONE_VM: "Clone VM",
  CREATE_VM_FROM_SNAPSHOT: "Create VM from snapshot", EXPORT_DISK: "Export disk",
  EXPORT_DISK_SNAPSHOT: "Export disk snapshot",
};

function words(type) {
  return TYPE_LABELS[type] || String(type || "operation");
}

function nowrap(text) {
  return h("span", { class: "nowrap" }, text || "—");
}

// ---------------------------------------------------------------- the list

function filterForm(ctx) {
  const values = Object.fromEntries(Object.keys(FILTERS).map((key) => [key, ctx.params.get(key) || ""]));
  const select = (options, value) => h("select", {},
    h("option", { value: "" }, "Any"),
    options.map((option) => h("option", { value: option, selected: option === value }, option)));
  const controls = {
    ns: h("input", { type: "text", value: values.ns, autocomplete: "off", spellcheck: "false", maxlength: 63,
                     placeholder: "all" }),
    type: select(TYPES, values.type),
    state: select(STATES, values.state),
    actor: h("input", { type: "text", value: values.actor, autocomplete: "off", spellcheck: "false",
                        maxlength: 253, placeholder: "anyone" }),
  };
  const size = pageSizeOf(ctx.params);
  const sizes = PAGE_SIZES.includes(size) ? PAGE_SIZES : [size, ...PAGE_SIZES];
  controls.pageSize = h("select", {}, sizes.map((n) => h("option", { value: n, selected: n === size }, n)));
  const form = h("form", { class: "card filters", "aria-label": "Filters" },
    h("div", { class: "row" },
      field({ label: "Namespace", name: "namespace", control: controls.ns }),
      field({ label: "Type", name: "type", control: controls.type }),
      field({ label: "State", name: "state", control: controls.state }),
      field({ label: "Actor", name: "actor", control: controls.actor }),
      field({ label: "Rows per page", name: "pageSize", control: controls.pageSize })),
    h("div", { class: "filter-actions" },
      h("button", { type: "submit", class: "primary" }, "Apply filters"),
      h("a", { href: "#/operations" }, "Clear filters")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    for (const [key, control] of Object.entries(controls)) {
      const value = control.value.trim();
      if (value && !(key === "pageSize" && value === DEFAULT_PAGE_SIZE)) query.set(key, value);
    }
    const text = query.toString();
    ctx.navigate(text ? `#/operations?${text}` : "#/operations");
  });
  return form;
}

const COLUMNS = ["Operation", "State", "Phase", "Target", "Namespace", "Actor", "Created"];

/** The list's rows, keyed by operation id; a refresh changes cells and moves no row it need not. */
class OperationRows {
  constructor() {
    this.rows = new Map();   // id -> {tr, cells, op}
    this.head = [];          // ids of the first page, as last fetched
    this.tail = [];          // ids loaded with More, in order
    this.tbody = h("tbody");
    this.empty = h("p", { class: "empty" }, "No operations match.");
    this.wrap = h("div", { class: "table-wrap", hidden: true },
      h("table", { "aria-label": "Operations" },
        h("thead", {}, h("tr", {}, COLUMNS.map((title) => h("th", { scope: "col" }, title)))), this.tbody));
    this.node = h("div", {}, this.empty, this.wrap);
  }

  row(op) {
    let row = this.rows.get(op.id);
    if (!row) {
      const cells = Object.fromEntries(COLUMNS.map((title) => [title, h("td", { "data-label": title })]));
      row = { tr: h("tr", { dataset: { key: op.id } }, Object.values(cells)), cells, op: null };
      this.rows.set(op.id, row);
    }
    if (!row.op || row.op.version !== op.version) {
      row.op = op;
      const c = row.cells;
      clear(c.Operation).append(opLink(op, words(op.type)), h("br"), h("span", { class: "muted mono" }, op.id.slice(0, 8)));
      clear(c.State).append(badge(op.state));
      clear(c.Phase).append(op.phase || "—");
      clear(c.Target).append(refText(op.target));
      clear(c.Namespace).append(op.namespace || "—");
      clear(c.Actor).append(op.actor || "—");
      clear(c.Created).append(h("time", { datetime: op.createTime, title: op.createTime }, `${age(op.createTime)} ago`));
    } else {
      clear(row.cells.Created).append(
        h("time", { datetime: op.createTime, title: op.createTime }, `${age(op.createTime)} ago`));
    }
    return row;
  }

  /** A fresh first page: its rows on top, then the pages More loaded. */
  refreshHead(items) {
    const fresh = items.map((op) => op.id);
    const freshSet = new Set(fresh);
    if (this.tail.length) {
      // Rows pushed off the first page by newer ones belong to the loaded pages now.
      const oldest = items.length ? items[items.length - 1].createTime : "";
      const pushed = this.head.filter((id) => !freshSet.has(id) && this.rows.get(id).op.createTime <= oldest);
      this.tail = [...pushed, ...this.tail.filter((id) => !freshSet.has(id) && !pushed.includes(id))];
    }
    this.head = fresh;
    for (const op of items) this.row(op);
    this.render();
  }

  appendPage(items) {
    const known = new Set([...this.head, ...this.tail]);
    for (const op of items) {
      this.row(op);
      if (!known.has(op.id)) this.tail.push(op.id);
    }
    this.render();
  }

  render() {
    const order = [...this.head, ...this.tail];
    const wanted = new Set(order);
    for (const [id, row] of [...this.rows]) {
      if (!wanted.has(id)) { row.tr.remove(); this.rows.delete(id); }
    }
    order.forEach((id, index) => {
      const tr = this.rows.get(id).tr;
      if (this.tbody.children[index] !== tr) this.tbody.insertBefore(tr, this.tbody.children[index] || null);
    });
    this.empty.hidden = order.length > 0;
    this.wrap.hidden = order.length === 0;
  }
}

async function renderList(main, ctx) {
  const query = {};
  for (const [key, param] of Object.entries(FILTERS)) query[param] = ctx.params.get(key) || "";
  query.pageSize = pageSizeOf(ctx.params);
  const form = filterForm(ctx);
  const box = problemBox();
  const rows = new OperationRows();
  const status = h("p", { class: "muted live-status" }, "Loading…");
  const more = h("button", { type: "button", hidden: true }, "More");
  let nextPageToken = "";
  let loadedMore = false;

  main.append(heading("Operations"), form, box,
    h("section", { "aria-label": "Operation list" }, status, rows.node, h("div", { class: "more" }, more)));

  if (!ctx.served("ListOperations")) {
    clear(status).append(notAvailable("Listing operations"));
    return;
  }

  const showMore = () => { more.hidden = !nextPageToken; };
  more.addEventListener("click", async () => {
    more.disabled = true;
    try {
      const page = await call("GET", "/v1/operations", { query: { ...query, pageToken: nextPageToken },
                                                           signal: ctx.signal });
      loadedMore = true;
      nextPageToken = page.nextPageToken;
      rows.appendPage(page.items);
      showMore();
    } catch (error) {
      if (error.name !== "AbortError") showProblem(box, error, form);
    } finally {
      more.disabled = false;
    }
  });

  const firstPage = async () => {
    const page = await call("GET", "/v1/operations", { query, signal: ctx.signal });
    rows.refreshHead(page.items);
    if (!loadedMore) { nextPageToken = page.nextPageToken; showMore(); }
    status.textContent = `Refreshed every 2 s · last at ${new Date().toLocaleTimeString()}`;
  };

  try {
    await firstPage();
  } catch (error) {
    if (error.name === "AbortError") return;
    status.textContent = "";
    showProblem(box, error, form);
    return;
  }
  // Live: the first page again every 2 s until the person leaves the page.
  (async () => {
    let failed = false;
    for (;;) {
      try {
        await pause(REFRESH_MS, ctx.signal);
        if (document.hidden) continue;
        await firstPage();
        if (failed) { clearProblem(box, form); failed = false; }
      } catch (error) {
        if (error.name === "AbortError" || ctx.signal.aborted) return;
        showProblem(box, error, form);
        failed = true;
        const retryable = error.status === 0 || error.status === 429 || error.status >= 500;
        if (!retryable) { status.textContent = "Not refreshing."; return; }
      }
    }
  })();
}

// ---------------------------------------------------------------- one operation

function facts(op) {
  const pairs = [
    ["Type", op.type],
    ["State", badge(op.state)],
    ["Phase", op.phase || "—"],
    ["Target", refText(op.target)],
    ["Resource", refText(op.resource)],
    ["Namespace", op.namespace || "—"],
    ["Actor", op.actor || "—"],
    ["Request id", op.requestId ? h("span", { class: "mono" }, op.requestId) : "—"],
    ["Created", time(op.createTime)],
    ["Updated", time(op.updateTime)],
    ["Ended", time(op.endTime)],
    ["Version", String(op.version)],
    ["Id", h("span", { class: "mono" }, op.id)],
  ];
  if (op.transfer) {
    const t = op.transfer;
    pairs.push(["Transfer", `${t.bytesSent} of ${t.length} bytes sent${t.outcome ? ` (${t.outcome})` : ""}`]);
  }
  return h("dl", { class: "facts" }, pairs.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
}

function conditionsTable(conditions) {
  return table([
    { title: "Type", cell: (c) => nowrap(c.type) },
    { title: "Status", cell: (c) => c.status },
    { title: "Reason", cell: (c) => c.reason || "—" },
    { title: "Message", cell: (c) => c.message || "—" },
    { title: "Since", cell: (c) => time(c.lastTransitionTime) },
  ], conditions.map((c) => ({ ...c, key: c.type })), { empty: "No conditions reported." });
}

function resultsTable(results) {
  const withSource = results.some((r) => r.sourceName);
  return table([
    { title: "Kind", cell: (r) => nowrap(r.kind) },
    { title: "Name", cell: (r) => h("span", { class: "mono" }, r.name) },
    ...(withSource ? [{ title: "From", cell: (r) => r.sourceName || "—" }] : []),
    { title: "Status", cell: (r) => badge(r.status) },
    { title: "Reason", cell: (r) => nowrap(r.reason) },
    { title: "Message", cell: (r) => r.message || "—" },
  ], results.map((r) => ({ ...r, key: `${r.kind}/${r.name}` })), { empty: "No per-resource results." });
}

function timelineTable(items) {
  return table([
    { title: "Time", cell: (t) => h("span", { class: "nowrap" }, time(t.time)) },
    { title: "State", cell: (t) => badge(t.state) },
    { title: "Phase", cell: (t) => t.phase || "—" },
    { title: "Reason", cell: (t) => t.reason || "—" },
    { title: "Message", cell: (t) => t.message || "—" },
  ], items.map((t) => ({ ...t, key: String(t.seq) })), { empty: "No transitions recorded yet." });
}

function cancelForm(op, ctx, onCancelled) {
  const box = problemBox();
  const force = op.type === "RESTORE_VM" ? h("input", { type: "checkbox" }) : null;
  let forceField = null;
  if (force) {
    forceField = field({ label: "Force: call off a VM restore in progress", name: "force", control: force,
                         hint: "The VM may be left half restored." });
    const label = forceField.querySelector("label");
    const choice = h("div", { class: "choice" });
    label.before(choice);
    choice.append(force, label);
  }
  const button = h("button", { type: "submit", class: "danger" }, "Cancel operation");
  let pending = null;   // {text, key}: the same key again only for a retry of an unanswered request
  const form = h("form", { class: "card cancel-form", "aria-label": "Cancel the operation" },
    forceField, button, box);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (button.disabled) return;
    clearProblem(box, form);
    button.disabled = true;
    const body = force ? { force: force.checked } : {};
    const text = JSON.stringify(body);
    if (!pending || pending.text !== text) pending = { text, key: idempotencyKey() };
    try {
      const answer = await call("POST", `/v1/operations/${encodeURIComponent(op.id)}:cancel`, {
        body, idempotencyKey: pending.key, signal: ctx.signal,
      });
      pending = null;
      onCancelled(answer);
    } catch (error) {
      if (error.name === "AbortError") return;
      if (!(error.status === 0 || error.status >= 500)) pending = null;
      showProblem(box, error, form);
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

async function renderDetail(main, ctx, id) {
  const path = `/v1/operations/${encodeURIComponent(id)}`;
  const box = problemBox();
  main.append(h("p", {}, h("a", { href: "#/operations" }, "← All operations")));
  if (!ctx.served("GetOperation")) {
    main.append(heading("Operation"), notAvailable("Reading an operation"));
    return;
  }
  let op;
  try {
    op = await call("GET", path, { signal: ctx.signal });
  } catch (error) {
    if (error.name === "AbortError") return;
    main.append(heading("Operation"), box);
    showProblem(box, error);
    return;
  }

  const title = h("h1", {}, "");
  const live = h("p", { class: "muted live-status", role: "status" });
  const factsSlot = h("div", { class: "card" });
  const errorSlot = h("div");
  const warningsSlot = h("div");
  const cancelSlot = h("div");
  const timelineSlot = h("div");
  const conditionsSlot = h("div");
  const resultsSlot = h("div");
  main.append(title, live, box, errorSlot, warningsSlot, cancelSlot, factsSlot,
    h("section", { "aria-labelledby": "timeline-h" }, h("h2", { id: "timeline-h" }, "Timeline"), timelineSlot),
    h("section", { "aria-labelledby": "conditions-h" }, h("h2", { id: "conditions-h" }, "Conditions"), conditionsSlot),
    h("section", { "aria-labelledby": "results-h" }, h("h2", { id: "results-h" }, "Results"), resultsSlot));

  let cancel = null;
  let timelineVersion = -1;
  let timelineAsked = 0;
  const loadTimeline = async () => {
    if (!ctx.served("GetOperationTimeline")) {
      clear(timelineSlot).append(notAvailable("The operation's timeline"));
      return;
    }
    if (timelineVersion === op.version) return;
    timelineVersion = op.version;
    const asked = ++timelineAsked;
    try {
      const timeline = await call("GET", `${path}/timeline`, { signal: ctx.signal });
      if (asked !== timelineAsked) return;   // a newer answer is on its way
      clear(timelineSlot).append(timelineTable(timeline.items));
    } catch (error) {
      if (error.name !== "AbortError") showProblem(box, error);
    }
  };

  const show = (next) => {
    if (op && next.version < op.version) return;   // never step back
    op = next;
    document.title = `${words(op.type)} · DVP Snapshot Gateway`;
    title.textContent = `${words(op.type)}: ${op.target && op.target.name ? op.target.name : op.id}`;
    clear(factsSlot).append(h("h2", {}, "Facts"), facts(op));
    clear(errorSlot);
    if (op.error) {
      errorSlot.append(h("div", { class: "problem op-error" },
        h("p", { class: "problem-title" }, `Failed: ${op.error.code}${op.error.reason ? ` (${op.error.reason})` : ""}`),
        h("p", {}, op.error.message || "")));
    }
    clear(warningsSlot);
    if (op.warnings && op.warnings.length) {
      warningsSlot.append(h("div", { class: "notice warnings" }, h("p", { class: "problem-title" }, "Warnings"),
        h("ul", {}, op.warnings.map((w) => h("li", {}, w)))));
    }
    clear(conditionsSlot).append(conditionsTable(op.conditions || []));
    clear(resultsSlot).append(resultsTable(op.results || []));
    if (op.done) {
      if (cancel) { const hadFocus = cancel.contains(document.activeElement); cancel.remove(); cancel = null;
                    if (hadFocus) title.focus(); }
      clear(cancelSlot);
    } else if (!cancel) {
      cancel = ctx.served("CancelOperation")
        ? cancelForm(op, ctx, (answer) => { show(answer); loadTimeline(); })
        : notAvailable("Cancelling an operation");
      cancelSlot.append(cancel);
    }
    loadTimeline();
  };
  title.setAttribute("tabindex", "-1");
  show(op);

  if (op.done) { live.textContent = `Done: ${op.state}.`; return; }
  if (!ctx.served("WatchOperation")) { clear(live).append(notAvailable("Live updates")); return; }
  // Follow the :watch stream until the operation is done; reconnect (resuming after the
  // last version seen) when it drops.
  (async () => {
    let failures = 0;
    while (!op.done) {
      try {
        live.textContent = "Live: following this operation.";
        await stream(`${path}:watch`, {
          signal: ctx.signal, lastEventId: String(op.version),
          onEvent: ({ event, data }) => { if (event === "operation") { failures = 0; show(data); } },
        });
        if (op.done) break;
      } catch (error) {
        if (error.name === "AbortError" || ctx.signal.aborted) return;
        const retryable = error.status === 0 || error.status === 429 || error.status >= 500
          || error.reason === "WATCH_OVERFLOW";
        if (!retryable) { live.textContent = "Not live."; showProblem(box, error); return; }
      }
      live.textContent = "Connection lost; reconnecting…";
      try {
        await pause(RETRY_DELAYS[Math.min(failures++, RETRY_DELAYS.length - 1)], ctx.signal);
      } catch {
        return;
      }
    }
    live.textContent = `Done: ${op.state}.`;
  })();
}

export default {
  async render(main, ctx) {
    useStylesheet("pages/operations.css");
    const root = h("div", { class: "operations-page" });
    main.append(root);
    if (ctx.args.length) await renderDetail(root, ctx, ctx.args[0]);
    else await renderList(root, ctx);
  },
};
