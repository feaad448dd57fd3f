// Snapshots (#/snapshots?ns=demo&kind=disk|vm): the disk or VM snapshots of a namespace as a
// live list (one listing, then the :watch stream; rows change in place), the create form of
// the platform's web UI (name, source, "Required consistency", the IP address policy for a
// VM) with the new snapshot's status shown under its name as it changes, and a delete per
// row behind an inline confirmation.

import { call, idempotencyKey, stream } from "../api.js";
import { age, badge, clearProblem, field, heading, notAvailable, problemBox, showProblem } from "../components.js";
import { clear, h, pause, useStylesheet } from "../dom.js";

const KINDS = {
  disk: {
    title: "Disk snapshots",
    one: "disk snapshot",
    path: "disk-snapshots",
    list: "ListDiskSnapshots",
    watch: "WatchDiskSnapshots",
    create: "CreateDiskSnapshot",
    remove: "DeleteDiskSnapshot",
    source: "virtualDiskName",
    sourceLabel: "Disk name",
    sourceColumn: "Disk",
    sourceHint: "The VirtualDisk to snapshot, e.g. linux-vm-root.",
    consistencyHint: "Refuse to snapshot a running VM's disk unless its file system can be frozen (qemu-guest-agent).",
  },
  vm: {
    title: "VM snapshots",
    one: "VM snapshot",
    path: "vm-snapshots",
    list: "ListVirtualMachineSnapshots",
    watch: "WatchVirtualMachineSnapshots",
    create: "CreateVirtualMachineSnapshot",
    remove: "DeleteVirtualMachineSnapshot",
    source: "virtualMachineName",
    sourceLabel: "Virtual machine name",
    sourceColumn: "VM",
    sourceHint: "The VirtualMachine to snapshot, e.g. linux-vm.",
    consistencyHint: "Refuse to snapshot a running VM unless its file systems can be frozen (qemu-guest-agent).",
  },
};
const NAME_HINT = "Lowercase letters, digits, '-' and '.'. Leave empty to have one generated from the source's name.";
const RETRY_DELAYS = [500, 1000, 2000, 5000, 10000];

function consistentText(value) {
  if (value === true) return "true";
  if (value === false) return "false";
  return "—";
}

/**
 * A refusal that names its field only in metadata (a missing disk: 404 with metadata.field
 * "virtual_disk_name") shows next to that field too, under the API's JSON name.
 */
function placed(error) {
  const named = error.metadata && error.metadata.field;
  if (!named || (error.fieldViolations || []).length) return error;
  const field = named.replace(/_([a-z])/g, (_, letter) => letter.toUpperCase());
  return { ...error, fieldViolations: [{ field, description: error.detail || error.title }] };
}

/**
 * One idempotency key per action: a new one for each new request, the same one when the
 * same request is sent again after an answer that never came (the gateway may have acted).
 */
function actionKeys() {
  let last = null;
  return {
    key(body) {
      const text = JSON.stringify(body);
      if (!last || last.text !== text) last = { text, key: idempotencyKey() };
      return last.key;
    },
    settled(error) {
      const unknown = error && (error.status === 0 || error.status >= 500);
      if (!unknown) last = null;
    },
  };
}

function hashFor(ns, kind) {
  return `#/snapshots?${new URLSearchParams({ ns, kind })}`;
}

/** The namespace chooser: a text field kept in the hash query. */
function namespaceForm(ns, kind, ctx) {
  const input = h("input", { type: "text", value: ns, autocomplete: "off", spellcheck: "false", required: true,
                             maxlength: 63 });
  const form = h("form", { class: "toolbar ns-form", "aria-label": "Choose a namespace" },
    field({ label: "Namespace", name: "namespace", control: input }),
    h("div", { class: "field" }, h("button", { type: "submit" }, "Apply")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    ctx.navigate(hashFor(input.value.trim() || "demo", kind));
  });
  return form;
}

/** Disk | VM: links that keep the namespace (Tab reaches them, Enter follows them). */
function kindTabs(ns, kind) {
  return h("nav", { class: "kind-tabs", "aria-label": "Snapshot kind" },
    h("ul", {}, Object.entries(KINDS).map(([key, spec]) => h("li", {},
      h("a", { href: hashFor(ns, key), "aria-current": key === kind ? "page" : null }, spec.title)))));
}

/** The live table: rows keyed by name, cells changed in place (a pending Delete? keeps its state). */
class SnapshotTable {
  constructor(spec, { onDelete }) {
    this.spec = spec;
    this.onDelete = onDelete;
    this.rows = new Map();   // name -> {tr, cells, snapshot}
    this.columns = ["Name", spec.sourceColumn, "Phase", "Consistent", ...(spec === KINDS.vm ? ["IP policy"] : []),
                    "Age", "Operation", "Actions"];
    this.tbody = h("tbody");
    this.empty = h("p", { class: "empty" }, `No ${spec.one}s in this namespace yet.`);
    this.tableWrap = h("div", { class: "table-wrap", hidden: true },
      h("table", { "aria-labelledby": "list-heading" },
        h("thead", {}, h("tr", {}, this.columns.map((title) => h("th", { scope: "col" }, title)))),
        this.tbody));
    this.node = h("div", {}, this.empty, this.tableWrap);
  }

  /** Replace every row with a fresh listing (rows that stay keep their element). */
  reset(items) {
    const names = new Set(items.map((s) => s.name));
    for (const name of [...this.rows.keys()]) if (!names.has(name)) this.remove(name);
    for (const snapshot of items) this.upsert(snapshot);
  }

  upsert(snapshot) {
    let row = this.rows.get(snapshot.name);
    if (!row) {
      row = this.newRow(snapshot);
      this.rows.set(snapshot.name, row);
      const after = [...this.rows.keys()].filter((n) => n > snapshot.name).sort()[0];
      this.tbody.insertBefore(row.tr, after ? this.rows.get(after).tr : null);
    }
    row.snapshot = snapshot;
    this.fill(row);
    this.refreshEmpty();
  }

  remove(name) {
    const row = this.rows.get(name);
    if (!row) return;
    const hadFocus = row.tr.contains(document.activeElement);
    row.tr.remove();
    this.rows.delete(name);
    this.refreshEmpty();
    return hadFocus;
  }

  refreshEmpty() {
    this.empty.hidden = this.rows.size > 0;
    this.tableWrap.hidden = this.rows.size === 0;
  }

  newRow(snapshot) {
    const cells = {};
    const tr = h("tr", { dataset: { key: snapshot.name } });
    for (const title of this.columns) {
      cells[title] = h("td", { "data-label": title });
      tr.append(cells[title]);
    }
    const row = { tr, cells, snapshot };
    this.idleActions(row);
    return row;
  }

  fill(row) {
    const s = row.snapshot;
    const { cells } = row;
    setCell(cells.Name, h("span", { class: "mono" }, s.name));
    setCell(cells[this.spec.sourceColumn], s[this.spec.source] || "—");
    setCell(cells.Phase, badge(s.phase || (s.deletionTime ? "Terminating" : "")));
    setCell(cells.Consistent, consistentText(s.consistent));
    if (cells["IP policy"]) setCell(cells["IP policy"], s.keepIPAddress || "—");
    this.fillAge(row);
    setCell(cells.Operation, s.operationId
      ? h("a", { href: `#/operations/${encodeURIComponent(s.operationId)}`, class: "mono",
                 "aria-label": `Operation of ${s.name}` }, s.operationId.slice(0, 8))
      : "—");
  }

  fillAge(row) {
    const s = row.snapshot;
    setCell(row.cells.Age, h("time", { datetime: s.createTime || "", title: s.createTime || "" }, age(s.createTime)));
  }

  tick() {
    for (const row of this.rows.values()) this.fillAge(row);
  }

  idleActions(row) {
    const cell = row.cells.Actions;
    clear(cell);
    if (!this.onDelete) { cell.append(h("span", { class: "muted" }, "—")); return null; }
    const name = row.snapshot.name;
    const button = h("button", { type: "button", class: "danger", "aria-label": `Delete ${name}` }, "Delete");
    button.addEventListener("click", () => this.confirm(row));
    cell.append(button);
    return button;
  }

  confirm(row) {
    const cell = row.cells.Actions;
    const name = row.snapshot.name;
    const yes = h("button", { type: "button", class: "danger" }, "Yes, delete");
    const no = h("button", { type: "button" }, "No");
    const question = h("span", { class: "confirm", role: "group", "aria-label": `Delete ${name}?` },
      h("span", {}, `Delete ${name}?`), " ", yes, " ", no);
    clear(cell).append(question);
    no.addEventListener("click", () => { const again = this.idleActions(row); if (again) again.focus(); });
    yes.addEventListener("click", async () => {
      yes.disabled = true;
      no.disabled = true;
      // The focus stays in the row until it goes; then it moves to the list's heading.
      const deleting = h("span", { class: "muted", role: "status", tabindex: "-1" }, `Deleting ${name}…`);
      clear(cell).append(deleting);
      deleting.focus();
      const ok = await this.onDelete(name);
      if (!ok && this.rows.get(name) === row) {
        const again = this.idleActions(row);
        if (again) again.focus();
      }
    });
    no.focus();
  }
}

function setCell(cell, ...content) {
  clear(cell).append(...content.map((c) => (c instanceof Node ? c : document.createTextNode(String(c)))));
}

/** "Status under the name" of the snapshot just created, as the watch reports it. */
class CreatedPanel {
  constructor() {
    this.node = h("section", { class: "card created", hidden: true, "aria-labelledby": "created-name" });
    this.target = null;
  }

  follow(op, name, kind) {
    this.target = { operationId: op.id, name: name || (op.resource && op.resource.name) || "" };
    this.phases = [];
    this.title = h("h3", { id: "created-name", tabindex: "-1", class: "mono" }, this.target.name || "(name pending)");
    this.badgeSlot = h("span", { class: "phase" }, badge(""));
    this.consistent = h("span", {}, "—");
    this.trail = h("span", { class: "trail" }, "");
    clear(this.node).append(
      this.title,
      h("p", { class: "status-line", role: "status" }, "Phase ", this.badgeSlot, " · consistent ", this.consistent),
      h("p", { class: "muted" }, "Phases seen: ", this.trail),
      h("p", {}, `New ${kind.one}; `,
        h("a", { href: `#/operations/${encodeURIComponent(op.id)}` }, "follow its operation"),
        h("span", { class: "muted mono" }, ` (${op.id})`)));
    this.node.hidden = false;
    this.title.focus();
  }

  matches(snapshot) {
    if (!this.target) return false;
    return snapshot.operationId === this.target.operationId || (this.target.name && snapshot.name === this.target.name);
  }

  update(snapshot, deleted = false) {
    if (!this.matches(snapshot)) return;
    if (!this.target.name) {
      this.target.name = snapshot.name;
      this.title.textContent = snapshot.name;
    }
    const phase = deleted ? "Deleted" : (snapshot.phase || "");
    clear(this.badgeSlot).append(badge(phase));
    this.consistent.textContent = consistentText(snapshot.consistent);
    if (phase && this.phases[this.phases.length - 1] !== phase) {
      this.phases.push(phase);
      this.trail.textContent = this.phases.join(" → ");
    }
  }
}

function createForm(spec, ctx, ns, onCreated) {
  const nameInput = h("input", { type: "text", autocomplete: "off", spellcheck: "false", maxlength: 253 });
  const sourceInput = h("input", { type: "text", autocomplete: "off", spellcheck: "false", required: true,
                                   maxlength: 253 });
  const consistency = h("input", { type: "checkbox", role: "switch", checked: true });
  const consistencyField = field({ label: "Required consistency", name: "requiredConsistency", control: consistency,
                                   hint: spec.consistencyHint });
  // The switch sits before its label, as a switch does.
  const label = consistencyField.querySelector("label");
  const choice = h("div", { class: "choice" });
  label.before(choice);
  choice.append(consistency, label);

  let keepIP = null;
  let keepIPField = null;
  if (spec === KINDS.vm) {
    const radios = ["Always", "Never"].map((value) => h("input", { type: "radio", name: "keepIPAddress", value,
                                                                    checked: value === "Always" }));
    const hints = {
      Always: "Always: a dynamic IP address becomes static, so a restore gets it back.",
      Never: "Never: the address stays as it is (Auto or Static).",
    };
    const errorNode = h("p", { class: "field-error", id: "keep-ip-error", hidden: true });
    keepIPField = h("div", { class: "field", dataset: { field: "keepIPAddress" } },
      h("fieldset", { "aria-describedby": "keep-ip-hint keep-ip-error" },
        h("legend", {}, "IP address policy"),
        radios.map((radio) => h("label", { class: "choice" }, radio, radio.value)),
        h("p", { class: "hint", id: "keep-ip-hint" }, `${hints.Always} ${hints.Never}`)),
      errorNode);
    keepIP = () => radios.find((r) => r.checked).value;
  }

  const box = problemBox();
  const keys = actionKeys();
  const submit = h("button", { type: "submit", class: "primary" }, "Create");
  const form = h("form", { class: "card create-form", "aria-labelledby": `create-${spec.path}`, novalidate: true },
    h("h2", { id: `create-${spec.path}` }, `Create a ${spec.one}`),
    field({ label: "Snapshot name", name: "name", control: nameInput, hint: NAME_HINT }),
    field({ label: spec.sourceLabel, name: spec.source, control: sourceInput, hint: spec.sourceHint }),
    consistencyField,
    keepIPField,
    h("div", { class: "actions" }, submit),
    box);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (submit.disabled) return;
    clearProblem(box, form);
    const body = {};
    const name = nameInput.value.trim();
    if (name) body.name = name;
    body[spec.source] = sourceInput.value.trim();
    body.requiredConsistency = consistency.checked;
    if (keepIP) body.keepIPAddress = keepIP();
    submit.disabled = true;
    try {
      const op = await call("POST", `/v1/namespaces/${encodeURIComponent(ns)}/${spec.path}`,
                            { body, idempotencyKey: keys.key(body), signal: ctx.signal });
      keys.settled(null);
      nameInput.value = "";
      onCreated(op, name);
    } catch (error) {
      if (error.name === "AbortError") return;
      keys.settled(error);
      showProblem(box, placed(error), form);
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

/**
 * List, then watch; on a dropped stream list and watch again after a short wait; on
 * WATCH_OVERFLOW (events were dropped) list and watch again at once.
 */
async function keepLive(spec, ns, ctx, table, panel, status, box, nsForm) {
  const base = `/v1/namespaces/${encodeURIComponent(ns)}/${spec.path}`;
  let failures = 0;
  for (;;) {
    try {
      status.textContent = "Loading…";
      const items = [];
      let pageToken = "";
      do {
        const page = await call("GET", base, { query: { pageToken }, signal: ctx.signal });
        items.push(...page.items);
        pageToken = page.nextPageToken;
      } while (pageToken);
      table.reset(items);
      for (const snapshot of items) panel.update(snapshot);
      clearProblem(box, nsForm);
      if (!ctx.served(spec.watch)) {
        clear(status).append(notAvailable("Live updates"));
        return;
      }
      status.textContent = "Live: changes show as they happen.";
      status.dataset.live = "on";
      await stream(`${base}:watch`, {
        signal: ctx.signal,
        onEvent: ({ event, data }) => {
          failures = 0;
          const snapshot = data.snapshot;
          if (!snapshot) return;
          if (event === "DELETED") {
            const hadFocus = table.remove(snapshot.name);
            panel.update(snapshot, true);
            if (hadFocus) table.heading.focus();
          } else {
            table.upsert(snapshot);
            panel.update(snapshot);
          }
        },
      });
      // The server ended the stream (a restart, a timeout): list and watch again.
      status.dataset.live = "off";
      status.textContent = "Reconnecting…";
      await pause(RETRY_DELAYS[Math.min(failures++, RETRY_DELAYS.length - 1)], ctx.signal);
    } catch (error) {
      if (error.name === "AbortError" || ctx.signal.aborted) return;
      status.dataset.live = "off";
      if (error.reason === "WATCH_OVERFLOW") {
        status.textContent = "Catching up…";
        continue;
      }
      const retryable = error.status === 0 || error.status === 429 || error.status >= 500;
      if (!retryable) {
        status.textContent = "Not live.";
        showProblem(box, error, nsForm);
        return;
      }
      status.textContent = "Connection lost; reconnecting…";
      try {
        await pause(RETRY_DELAYS[Math.min(failures++, RETRY_DELAYS.length - 1)], ctx.signal);
      } catch {
        return;
      }
    }
  }
}

export default {
  async render(main, ctx) {
    useStylesheet("pages/snapshots.css");
    const ns = ctx.params.get("ns") || "demo";
    const kind = KINDS[ctx.params.get("kind")] ? ctx.params.get("kind") : "disk";
    const spec = KINDS[kind];

    const nsForm = namespaceForm(ns, kind, ctx);
    const listBox = problemBox();
    const status = h("p", { class: "live-status muted", role: "status" });
    const panel = new CreatedPanel();
    const served = (method) => ctx.served(method);

    const table = new SnapshotTable(spec, {
      onDelete: served(spec.remove) ? async (name) => {
        try {
          await call("DELETE", `/v1/namespaces/${encodeURIComponent(ns)}/${spec.path}/${encodeURIComponent(name)}`,
                     { idempotencyKey: idempotencyKey(), signal: ctx.signal });
          return true;
        } catch (error) {
          if (error.name !== "AbortError") showProblem(listBox, error);
          return false;
        }
      } : null,
    });
    table.heading = h("h2", { id: "list-heading", tabindex: "-1" }, `${spec.title} in ${ns}`);

    const createArea = served(spec.create)
      ? createForm(spec, ctx, ns, (op, name) => {
        panel.follow(op, name, spec);
        for (const row of table.rows.values()) panel.update(row.snapshot);
      })
      : h("section", { class: "card" }, h("h2", {}, `Create a ${spec.one}`), notAvailable(`Creating ${spec.one}s`));

    main.append(h("div", { class: "snapshots-page" },
      heading("Snapshots"),
      nsForm,
      kindTabs(ns, kind),
      h("div", { class: "create-row" }, createArea, panel.node),
      h("section", { class: "snapshot-list", "aria-labelledby": "list-heading" },
        table.heading, status, listBox,
        served(spec.list) ? table.node : notAvailable(`Listing ${spec.one}s`),
        served(spec.remove) ? null : notAvailable(`Deleting ${spec.one}s`))));

    const ticker = setInterval(() => table.tick(), 5000);
    ctx.signal.addEventListener("abort", () => clearInterval(ticker), { once: true });
    if (served(spec.list)) keepLive(spec, ns, ctx, table, panel, status, listBox, nsForm);
  },
};
