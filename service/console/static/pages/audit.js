// "Audit" (#/audit?actor=...&action=...&pageToken=...&back=...): the hash chain's
// verification at the top, a search with keyset paging (Next: nextPageToken; Previous: the
// stack of earlier tokens, kept in the hash with the filters so a reload shows the same
// page), and CSV / JSON Lines downloads of the search shown.

import { ApiError, call, download, jsonLines } from "../api.js";
import { badge, clearProblem, field, heading, notAvailable, problemBox, showProblem, table, time }
  from "../components.js";
import { clear, h, useStylesheet } from "../dom.js";

const STYLE = "pages/audit.css";
const FILTERS = ["actor", "namespace", "resource", "action", "outcome", "since", "until"];
const OUTCOMES = ["SUCCESS", "DENIED", "ERROR"];   // openapi.yaml AuditOutcome
const DEFAULT_PAGE_SIZE = 25;
// The contract's method names (openapi.yaml operationIds), used when capabilities.json is not readable.
const METHOD_NAMES = [
  "CancelOperation", "CloneVirtualMachine", "CreateDiskSnapshot", "CreateVirtualMachineFromSnapshot",
  "CreateVirtualMachineSnapshot", "DeleteDiskSnapshot", "DeleteVirtualMachineSnapshot", "ExportAuditEvents",
  "ExportDisk", "ExportDiskSnapshot", "GetDiskSnapshot", "GetOperation", "GetOperationTimeline",
  "GetVirtualMachineSnapshot", "ListAuditEvents", "ListDiskSnapshots", "ListOperations",
  "ListVirtualMachineSnapshots", "RestoreDisk", "RestoreVirtualMachine", "VerifyAuditLog", "VerifyAuditLogStream",
  "WatchDiskSnapshots", "WatchOperation", "WatchVirtualMachineSnapshots",
];

async function methodNames(signal) {
  try {
    const response = await fetch("capabilities.json", { cache: "no-store", signal });
    if (response.ok) return Object.keys((await response.json()).methods).sort();
  } catch (error) {
    if (error.name === "AbortError") throw error;
  }
  return METHOD_NAMES;
}

// ------------------------------------------------------------------ times: datetime-local <-> RFC 3339

/** "2026-03-01T10:30" (the person's local time) -> "2026-03-01T09:30:00Z"; "" stays "". */
function toRfc3339(local) {
  if (!local) return "";
  const date = new Date(local);
  return Number.isNaN(date.getTime()) ? local : date.toISOString().replace(/\.000Z$/, "Z");
}

/** The reverse, for filling the inputs from the hash. */
function toLocalInput(rfc3339) {
  if (!rfc3339) return "";
  const date = new Date(rfc3339);
  if (Number.isNaN(date.getTime())) return "";
  const pad = (n) => String(n).padStart(2, "0");
  const seconds = date.getSeconds() ? `:${pad(date.getSeconds())}` : "";
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
    `T${pad(date.getHours())}:${pad(date.getMinutes())}${seconds}`;
}

function stamp() {
  const now = new Date();
  const pad = (n) => String(n).padStart(2, "0");
  return `${now.getFullYear()}${pad(now.getMonth() + 1)}${pad(now.getDate())}`;
}

// ------------------------------------------------------------------ the chain verification

function verification(ctx, onResult) {
  const streamed = ctx.served("VerifyAuditLogStream");
  const served = streamed || ctx.served("VerifyAuditLog");
  if (!served) return { node: notAvailable("Audit chain verification"), run: async () => {} };
  const status = h("div", { class: "chain busy", role: "status" });
  const again = h("button", { type: "button" }, "Verify again");
  const box = problemBox();
  const node = h("section", { class: "card verify", "aria-label": "Audit chain verification" }, status, again, box);

  function progress(checked, total) {
    clear(status).append(
      h("p", { class: "chain-title" }, "Verifying the audit chain…"),
      h("progress", { max: total || 1, value: checked || 0, "aria-label": "Events verified" }),
      h("p", { class: "muted" }, total ? `${checked} of ${total} events checked` : "Starting"));
  }

  function result(answer) {
    status.className = `chain ${answer.ok ? "ok" : "bad"}`;
    if (answer.ok) {
      clear(status).append(h("p", { class: "chain-title" },
        `Audit chain intact — ${answer.checked} event${answer.checked === 1 ? "" : "s"} verified`));
      return;
    }
    const where = answer.firstBadId === null || answer.firstBadId === undefined ? "" : ` at event ${answer.firstBadId}`;
    clear(status).append(
      h("p", { class: "chain-title" }, `Audit chain broken${where}`),
      h("dl", { class: "facts" },
        answer.firstBadId !== null && answer.firstBadId !== undefined
          ? [h("dt", {}, "First broken link"), h("dd", {}, `event ${answer.firstBadId}`)] : null,
        h("dt", {}, "What was found"), h("dd", {}, answer.message || "—"),
        h("dt", {}, "Intact before it"), h("dd", {}, `${answer.checked} event${answer.checked === 1 ? "" : "s"}`)),
      h("p", {}, "Events from that one on cannot be trusted: the log was changed outside the gateway."));
  }

  async function viaStream() {
    const answer = await jsonLines("POST", "/v1/audit:verifyStream", {
      signal: ctx.signal,
      onLine: (step) => {
        if (step.result) return step.result;   // the last line: stop reading
        progress(step.checked, step.total);
        return undefined;
      },
    });
    if (answer !== undefined) return answer;
    throw new ApiError({ title: "The verification did not finish",
                         detail: "The stream ended without a result; verify again." }, 0);
  }

  async function run({ again: repeated = false } = {}) {
    again.disabled = true;
    clearProblem(box);
    status.className = "chain busy";
    progress(0, 0);
    try {
      const answer = streamed ? await viaStream() : await call("POST", "/v1/audit:verify", { signal: ctx.signal });
      result(answer);
      onResult(answer, repeated);   // a repeated one refreshes the events shown too
    } catch (error) {
      if (error.name === "AbortError") return;
      status.className = "chain bad";
      clear(status).append(h("p", { class: "chain-title" }, "The audit chain could not be verified"));
      showProblem(box, error);
    } finally {
      again.disabled = false;
    }
  }
  again.addEventListener("click", () => run({ again: true }));
  return { node, run };
}

// ------------------------------------------------------------------ search, paging, downloads

function readState(params) {
  const filters = {};
  for (const name of FILTERS) filters[name] = params.get(name) || "";
  const size = Number.parseInt(params.get("pageSize") || "", 10);
  return {
    filters,
    pageSize: Number.isFinite(size) && size > 0 ? size : DEFAULT_PAGE_SIZE,
    pageToken: params.get("pageToken") || "",
    back: params.getAll("back"),
  };
}

function writeHash(state) {
  const query = new URLSearchParams();
  for (const name of FILTERS) if (state.filters[name]) query.set(name, state.filters[name]);
  if (state.pageSize !== DEFAULT_PAGE_SIZE) query.set("pageSize", String(state.pageSize));
  if (state.pageToken) query.set("pageToken", state.pageToken);
  for (const token of state.back) query.append("back", token);
  const text = query.toString();
  // replaceState: the hash keeps the query for a reload without a hashchange (no re-render).
  history.replaceState(history.state, "", `#/audit${text ? `?${text}` : ""}`);
}

const COLUMNS = [
  { title: "#", cell: (e) => String(e.id) },
  { title: "Time", cell: (e) => time(e.time) },
  { title: "Actor", cell: (e) => e.actor },
  { title: "Action", cell: (e) => e.action },
  { title: "Namespace", cell: (e) => e.namespace || "—" },
  { title: "Resource", cell: (e) => e.operationId
    ? h("span", {}, e.resource || "—", " ", h("a", { href: `#/operations/${encodeURIComponent(e.operationId)}`,
                                                  "aria-label": `Operation ${e.operationId}` }, "operation"))
    : (e.resource || "—") },
  { title: "Outcome", cell: (e) => h("span", {}, badge(e.outcome),
    e.code || e.reason
      ? h("span", { class: "muted small" }, ` ${[e.code, e.reason].filter(Boolean).join(" ")}`) : null) },
  { title: "Request id", cell: (e) => h("code", {}, e.requestId || "—") },
  { title: "Protocol", cell: (e) => e.protocol },
];

async function downloadExport(query, format) {
  const accept = format === "csv" ? "text/csv" : "application/x-ndjson";
  return download("/v1/audit/events:export", query, `audit-${stamp()}.${format}`, accept);
}

function search(ctx, actions) {
  if (!ctx.served("ListAuditEvents")) return { node: notAvailable("Audit search"), verified: () => {} };
  let state = readState(ctx.params);
  let applied = state;

  const controls = {
    actor: h("input", { type: "text", value: state.filters.actor, autocomplete: "off", spellcheck: "false" }),
    namespace: h("input", { type: "text", value: state.filters.namespace, autocomplete: "off", spellcheck: "false" }),
    resource: h("input", { type: "text", value: state.filters.resource, autocomplete: "off", spellcheck: "false" }),
    action: h("select", {}, h("option", { value: "" }, "Any action"),
      [...new Set([...actions, state.filters.action].filter(Boolean))].sort()
        .map((name) => h("option", { value: name, selected: name === state.filters.action }, name))),
    outcome: h("select", {}, h("option", { value: "" }, "Any outcome"),
      OUTCOMES.map((name) => h("option", { value: name, selected: name === state.filters.outcome }, name))),
    since: h("input", { type: "datetime-local", step: 1, value: toLocalInput(state.filters.since) }),
    until: h("input", { type: "datetime-local", step: 1, value: toLocalInput(state.filters.until) }),
    pageSize: h("input", { type: "number", min: 1, max: 500, value: String(state.pageSize) }),
  };
  const box = problemBox();
  const form = h("form", { class: "card search", novalidate: true, "aria-label": "Search the audit log" },
    h("div", { class: "row" },
      field({ label: "Actor", name: "actor", control: controls.actor, hint: "A subject, e.g. dev." }),
      field({ label: "Namespace", name: "namespace", control: controls.namespace }),
      field({ label: "Action", name: "action", control: controls.action }),
      field({ label: "Outcome", name: "outcome", control: controls.outcome })),
    h("div", { class: "row" },
      field({ label: "Resource", name: "resource", control: controls.resource,
              hint: "A prefix (disk-snapshots/) or one resource (disk-snapshots/name)." }),
      field({ label: "Since", name: "since", control: controls.since, hint: "Your local time, inclusive." }),
      field({ label: "Until", name: "until", control: controls.until, hint: "Your local time, exclusive." }),
      field({ label: "Events per page", name: "pageSize", control: controls.pageSize })),
    h("div", { class: "toolbar" },
      h("button", { type: "submit", class: "primary" }, "Search"),
      h("button", { type: "reset" }, "Clear filters")),
    box);

  const summary = h("p", { class: "muted", role: "status" });
  const results = h("div", { class: "results" });
  const previous = h("button", { type: "button", disabled: true }, "Previous");
  const next = h("button", { type: "button", disabled: true }, "Next");
  const resultsHeading = h("h2", { id: "audit-events", tabindex: "-1" }, "Events");
  let nextToken = "";

  const downloads = ctx.served("ExportAuditEvents")
    ? h("div", { class: "toolbar downloads" },
        h("button", { type: "button", onclick: () => save("csv") }, "Download CSV"),
        h("button", { type: "button", onclick: () => save("jsonl") }, "Download JSON Lines"),
        h("span", { class: "muted" }, "Every event of the search shown, all pages."))
    : notAvailable("Audit export");
  const downloadBox = problemBox();

  async function save(format) {
    clearProblem(downloadBox);
    try {
      await downloadExport(queryOf(applied.filters), format);
    } catch (error) {
      showProblem(downloadBox, error);
    }
  }

  function queryOf(filters) {
    const query = {};
    for (const name of FILTERS) if (filters[name]) query[name] = filters[name];
    return query;
  }

  async function load(wanted, { focusResults = false } = {}) {
    previous.disabled = true;
    next.disabled = true;
    summary.textContent = "Loading…";
    try {
      const page = await call("GET", "/v1/audit/events", {
        query: { ...queryOf(wanted.filters), pageSize: wanted.pageSize, pageToken: wanted.pageToken },
        signal: ctx.signal });
      state = wanted;
      applied = wanted;
      nextToken = page.nextPageToken || "";
      writeHash(state);
      clear(results).append(table(COLUMNS, page.items.map((e) => ({ ...e, key: String(e.id) })),
        { caption: `Audit events, page ${state.back.length + 1}`, empty: "No events match these filters." }));
      markBroken();
      const first = page.items.length ? page.items[0].id : null;
      const last = page.items.length ? page.items[page.items.length - 1].id : null;
      const span = first === last ? `event ${first}` : `events ${first}–${last}`;
      summary.textContent = page.items.length
        ? `Page ${state.back.length + 1}: ${span}${nextToken ? ", more on the next page" : ""}.`
        : `Page ${state.back.length + 1}: no events.`;
      previous.disabled = state.back.length === 0;
      next.disabled = !nextToken;
      if (focusResults) resultsHeading.focus();
    } catch (error) {
      if (error.name === "AbortError") return;
      summary.textContent = "";
      previous.disabled = applied.back.length === 0;
      next.disabled = !nextToken;
      showProblem(box, error, form);
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    clearProblem(box, form);
    const filters = {};
    for (const name of FILTERS) filters[name] = controls[name].value.trim();
    filters.since = toRfc3339(filters.since);
    filters.until = toRfc3339(filters.until);
    const size = Number.parseInt(controls.pageSize.value, 10);
    load({ filters, pageSize: Number.isFinite(size) && size > 0 ? size : DEFAULT_PAGE_SIZE, pageToken: "", back: [] });
  });
  form.addEventListener("reset", () => {
    // After the browser resets the controls to their initial values: empty them instead.
    setTimeout(() => {
      for (const name of FILTERS) controls[name].value = "";
      controls.pageSize.value = String(DEFAULT_PAGE_SIZE);
    });
  });
  next.addEventListener("click", () => {
    if (!nextToken) return;
    load({ ...applied, pageToken: nextToken, back: [...applied.back, applied.pageToken] }, { focusResults: true });
  });
  previous.addEventListener("click", () => {
    if (!applied.back.length) return;
    const back = applied.back.slice(0, -1);
    load({ ...applied, pageToken: applied.back[applied.back.length - 1], back }, { focusResults: true });
  });

  let broken = null;   // the first broken event's id, marked in the table when it is shown
  function markBroken() {
    for (const row of results.querySelectorAll("tbody tr")) {
      const bad = broken !== null && row.dataset.key === String(broken);
      row.classList.toggle("broken", bad);
      if (bad) row.title = "The first broken link of the audit chain";
      else row.removeAttribute("title");
    }
  }
  function verified(answer, refresh) {
    broken = answer.ok ? null : answer.firstBadId ?? null;
    if (refresh) load(applied);   // what the table shows may be what changed
    else markBroken();
  }

  load(state);
  const node = h("div", {}, form,
    h("section", { "aria-labelledby": "audit-events" },
      h("div", { class: "results-head" }, resultsHeading, downloads), downloadBox,
      summary, results,
      h("nav", { class: "toolbar pager", "aria-label": "Pages of events" }, previous, next)));
  return { node, verified };
}

export default {
  async render(main, ctx) {
    useStylesheet(STYLE);
    const actions = await methodNames(ctx.signal);
    const events = search(ctx, actions);
    const verify = verification(ctx, events.verified);
    main.append(heading("Audit log"), verify.node, events.node);
    verify.run();
  },
};
