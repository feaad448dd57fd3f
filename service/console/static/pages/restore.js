// "Restore and clone" (#/restore/<form>): restore a VM, restore a disk, clone a VM, create
// a VM from a VM snapshot. The VM forms show the DryRun answer first (every conflict, the
// per-resource results, the name map of a clone, the warnings and the verdict); only a
// clean dry run of exactly the inputs shown enables the real call. A disk restore has no
// DryRun in the API: the form says what the call will do instead.

import { call, idempotencyKey, stream } from "../api.js";
import { badge, clearProblem, field, heading, notAvailable, problemBox, showProblem, table, time }
  from "../components.js";
import { clear, h, pause, uid, useStylesheet } from "../dom.js";

const STYLE = "pages/restore.css";
const NAME_HINT = "Lowercase letters, digits and '-'.";
const KINDS = ["VirtualMachine", "VirtualDisk", "VirtualMachineIPAddress", "VirtualMachineMACAddress",
               "VirtualMachineBlockDeviceAttachment", "Secret"];

const FORMS = [
  { slug: "vm", title: "Restore a VM", method: "RestoreVirtualMachine", build: restoreVmForm },
  { slug: "disk", title: "Restore a disk", method: "RestoreDisk", build: restoreDiskForm },
  { slug: "clone", title: "Clone a VM", method: "CloneVirtualMachine", build: cloneVmForm },
  { slug: "from-snapshot", title: "VM from a VM snapshot", method: "CreateVirtualMachineFromSnapshot",
    build: fromSnapshotForm },
];

// ------------------------------------------------------------------ small pieces

function textInput(value = "", props = {}) {
  return h("input", { type: "text", value, autocomplete: "off", spellcheck: "false", autocapitalize: "none",
                      ...props });
}

function datalist(id) {
  return h("datalist", { id });
}

function fillDatalist(list, values) {
  clear(list);
  for (const value of [...new Set(values)].sort()) list.append(h("option", { value }));
}

/** showProblem, with the violations of one field joined (a clone's prefix can fail for several objects). */
function showError(box, error, form) {
  const merged = new Map();
  for (const violation of error.fieldViolations || []) {
    const before = merged.get(violation.field);
    merged.set(violation.field, before ? `${before} ${violation.description}` : violation.description);
  }
  const fieldViolations = [...merged].map(([name, description]) => ({ field: name, description }));
  showProblem(box, { ...error, title: error.title, fieldViolations }, form);
}

/** Fields of the URL path must be there before a call can be made at all. */
function missing(form, box, required) {
  const violations = required.filter(([, value]) => !value)
    .map(([name]) => ({ field: name, description: "must not be empty" }));
  if (!violations.length) return false;
  showError(box, { title: "Some required fields are empty", fieldViolations: violations }, form);
  return true;
}

function segment(value) {
  return encodeURIComponent(value);
}

/**
 * Follow an operation until it is done: its :watch stream (resumed with Last-Event-ID when it
 * drops), or GetOperation polls when the watch is not served. ``onUpdate`` gets each version.
 */
async function follow(ctx, id, onUpdate) {
  const path = `/v1/operations/${segment(id)}`;
  let last = null;
  let lastEventId = "";
  for (;;) {
    if (ctx.served("WatchOperation")) {
      try {
        await stream(`${path}:watch`, {
          signal: ctx.signal, lastEventId,
          onEvent: ({ id: eventId, data }) => { lastEventId = eventId || lastEventId; last = data; onUpdate(data); },
        });
      } catch (error) {
        if (error.name === "AbortError") throw error;
        // A watch that fell behind (409) or a dependency hiccup: read the operation, then watch again.
        if (error.status !== 409 && error.status !== 0 && !(error.status >= 500)) throw error;
      }
      if (last && last.done) return last;
    }
    last = await call("GET", path, { signal: ctx.signal });
    lastEventId = String(last.version || "");
    onUpdate(last);
    if (last.done) return last;
    await pause(ctx.served("WatchOperation") ? 300 : 1000, ctx.signal);
  }
}

function blocking(result) {
  return result.status === "Conflict" || result.status === "Failed";
}

/** A dry run the real call may follow: it ended well and found nothing in the way. */
function clean(op) {
  return op.done && op.state === "SUCCEEDED" && !op.results.some(blocking);
}

function resultsTable(op, clone) {
  const columns = [{ title: "Kind", cell: (r) => r.kind }];
  if (clone) {
    columns.push({ title: "Source name", cell: (r) => h("span", { class: "mono" }, r.sourceName || "—") },
                 { title: "New name", cell: (r) => r.name
                   ? h("span", { class: "mono" }, r.name) : h("span", { class: "muted" }, "named by the platform") });
  } else {
    columns.push({ title: "Name", cell: (r) => h("span", { class: "mono" }, r.name || "—") });
  }
  columns.push({ title: "Status", cell: (r) => badge(r.status) },
               { title: "Reason", cell: (r) => r.reason || "—" },
               { title: "Message", cell: (r) => r.message || "—" });
  return table(columns, op.results.map((r, index) => ({ ...r, key: `${r.kind}/${r.name || r.sourceName}/${index}` })), {
    caption: clone ? "Name map: what each object is made from" : "Resources",
    empty: op.done ? "The answer lists no resources." : "No results yet.",
  });
}

/**
 * What an operation says so far: its verdict, its conflicts, its results table, its warnings
 * and conditions, and a link to the operations page.
 */
function operationView(op, { clone, dryRun, what }) {
  const conflicts = op.results.filter(blocking);
  let tone = "busy";
  let verdict;
  if (!op.done) {
    verdict = dryRun ? "Checking…" : `${what}: in progress…`;
  } else if (dryRun && clean(op)) {
    tone = "ok";
    verdict = `No conflicts found: the ${what.toLowerCase()} can go ahead.`;
  } else if (dryRun) {
    tone = "bad";
    verdict = conflicts.length
      ? `The dry run found ${conflicts.length} conflict${conflicts.length === 1 ? "" : "s"}: ` +
        "resolve them and check again."
      : `The dry run ended ${op.state}: resolve the problem and check again.`;
  } else if (op.state === "SUCCEEDED") {
    tone = "ok";
    verdict = `${what}: done.`;
  } else {
    tone = "bad";
    verdict = `${what}: ${op.state}.`;
  }
  const conditions = op.conditions || [];
  return h("div", { class: "op-view" },
    h("p", { class: `verdict ${tone}` }, badge(op.state), " ", verdict),
    op.error ? h("p", { class: "problem" }, `${op.error.reason || op.error.code}: ${op.error.message}`) : null,
    conflicts.length
      ? h("div", { class: "conflicts" },
          h("p", { class: "problem-title" }, `Conflicts (${conflicts.length})`),
          h("ul", {}, conflicts.map((r) => h("li", {},
            h("strong", {}, `${r.kind} ${r.name || r.sourceName}`), `: ${r.reason || r.status}`,
            r.message ? ` — ${r.message}` : ""))))
      : null,
    resultsTable(op, clone),
    op.warnings && op.warnings.length
      ? h("div", { class: "notice warnings" }, h("p", { class: "problem-title" }, "Warnings"),
          h("ul", {}, op.warnings.map((w) => h("li", {}, w))))
      : null,
    conditions.length
      ? h("div", {}, h("p", { class: "conditions-title" }, "Conditions"),
          h("ul", { class: "conditions muted" }, conditions.map((c) => h("li", {},
            `${c.type} ${c.status}${c.reason ? ` (${c.reason})` : ""}${c.message ? `: ${c.message}` : ""}`))))
      : null,
    h("dl", { class: "facts" },
      h("dt", {}, "Operation"), h("dd", {}, h("a", { href: `#/operations/${segment(op.id)}` }, op.id)),
      h("dt", {}, "Phase"), h("dd", {}, op.phase || "—"),
      h("dt", {}, "Updated"), h("dd", {}, time(op.updateTime))));
}

/** Tell screen readers the verdict of ``view`` (an operationView), once per change of it. */
function say(region, view) {
  const text = view.querySelector(".verdict").textContent;
  if (region.textContent !== text) region.textContent = text;
}

/** The namespace field every form starts with. */
function namespaceField(ctx) {
  const input = textInput(ctx.params.get("namespace") || "demo", { required: true });
  return { input, node: field({ label: "Namespace", name: "namespace", control: input }) };
}

/** Load a list for a datalist when the call is served; a failure only leaves the list empty. */
async function names(ctx, method, path, pick) {
  if (!ctx.served(method)) return [];
  try {
    const page = await call("GET", path, { query: { pageSize: 500 }, signal: ctx.signal });
    return page.items.map(pick);
  } catch {
    return [];
  }
}

// ------------------------------------------------------------------ the two-step forms (dry run, then the call)

/**
 * The dry run and the real call. ``read()`` -> {path, body, required: [[field, value]]} for
 * the current inputs; the real call sends exactly what the last clean dry run checked.
 */
function twoStep(ctx, { form, fields, read, what, action, clone }) {
  const box = problemBox();
  const checkButton = h("button", { type: "submit", class: "primary" }, "Check (dry run)");
  const checkOut = h("div", { class: "check-out" });
  const checkSaid = h("p", { class: "visually-hidden", role: "status" });
  const applyHint = h("p", { class: "hint", id: `${form.id}-apply-hint` }, "Run the check first.");
  const applyButton = h("button", { type: "button", class: "primary", disabled: true,
                                    "aria-describedby": applyHint.id }, action);
  const modeName = `${form.id}-mode`;
  const modes = h("fieldset", { class: "modes" }, h("legend", {}, "Mode"),
    h("label", { class: "choice" }, h("input", { type: "radio", name: modeName, value: "Strict", checked: true }),
      "Strict: all or nothing"),
    h("label", { class: "choice" }, h("input", { type: "radio", name: modeName, value: "BestEffort" }),
      "BestEffort: leave out missing images and go on"));
  const applyOut = h("div", { class: "apply-out" });
  const applySaid = h("p", { class: "visually-hidden", role: "status" });
  let checked = null;   // {fingerprint, path, body} of the last clean dry run
  let note = "";        // why the button is off when it is not for want of a check
  let running = false;
  let checkKey = null;  // kept for a retry of the same check after a lost connection
  let checkKeyFor = "";

  const fingerprint = (request) => JSON.stringify([request.path, request.body]);

  function sync() {
    const current = fingerprint(read());
    const ready = checked !== null && checked.fingerprint === current;
    applyButton.disabled = running || !ready;
    checkButton.disabled = running;
    if (running) return;
    if (checked === null && note) applyHint.textContent = note;
    else if (checked === null) applyHint.textContent = "Run the check first: the button enables after a clean dry run.";
    else if (!ready) applyHint.textContent = "The inputs changed since the dry run: check again.";
    else applyHint.textContent = `The dry run of these inputs found no conflicts. ${action} runs them for real.`;
  }

  form.addEventListener("input", sync);
  form.addEventListener("change", sync);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearProblem(box, form);
    const request = read();
    if (missing(form, box, request.required)) return;
    const print = fingerprint(request);
    if (checkKeyFor !== print) { checkKey = idempotencyKey(); checkKeyFor = print; }
    running = true;
    checked = null;
    note = "";
    clear(applyOut);
    sync();
    clear(checkOut).append(h("p", { class: "muted" }, "Sending the dry run…"));
    try {
      const accepted = await call("POST", request.path, {
        body: { ...request.body, mode: "DryRun" }, idempotencyKey: checkKey, signal: ctx.signal });
      const show = (op) => say(checkSaid,
        clear(checkOut).appendChild(operationView(op, { clone, dryRun: true, what })));
      show(accepted);
      const done = await follow(ctx, accepted.id, show);
      checkKeyFor = "";   // answered: the next check is a new action
      if (clean(done)) checked = { fingerprint: print, ...request };
      else note = "The dry run did not come back clean: resolve what it found and check again.";
    } catch (error) {
      if (error.name === "AbortError") return;
      if (error.status !== 0 && !(error.status >= 500)) checkKeyFor = "";
      clear(checkOut);
      showError(box, error, form);
    } finally {
      running = false;
      if (!ctx.signal.aborted) sync();
    }
  });

  applyButton.addEventListener("click", async () => {
    if (checked === null) return;
    clearProblem(box, form);
    const mode = form.querySelector(`input[name="${modeName}"]:checked`).value;
    const request = checked;
    running = true;
    sync();
    clear(applyOut).append(h("p", { class: "muted" }, `${action}: sending…`));
    try {
      const accepted = await call("POST", request.path, {
        body: { ...request.body, mode }, idempotencyKey: idempotencyKey(), signal: ctx.signal });
      checked = null;   // done once: names are taken now, a new call needs a new check
      note = `${action} was sent (below). Check again before another one.`;
      const show = (op) => {
        clear(applyOut).append(h("h3", {}, `${action} (${mode})`));
        say(applySaid, applyOut.appendChild(operationView(op, { clone, dryRun: false, what })));
      };
      show(accepted);
      await follow(ctx, accepted.id, show);
    } catch (error) {
      if (error.name === "AbortError") return;
      clear(applyOut);
      showError(box, error, form);
    } finally {
      running = false;
      if (!ctx.signal.aborted) sync();
    }
  });

  form.append(
    fields,
    h("section", { class: "step", "aria-labelledby": `${form.id}-step1` },
      h("h3", { id: `${form.id}-step1` }, "1. Check"),
      h("p", { class: "hint" }, "A dry run changes nothing: it lists what the call would do and every conflict."),
      checkButton, box, checkSaid, checkOut),
    h("section", { class: "step", "aria-labelledby": `${form.id}-step2` },
      h("h3", { id: `${form.id}-step2` }, `2. ${action}`),
      modes, applyButton, applyHint, applySaid, applyOut));
  sync();
  return form;
}

function customizationFields(ctx, prefix = "", suffix = "") {
  const prefixInput = textInput(prefix, { maxlength: 59 });
  const suffixInput = textInput(suffix, { maxlength: 59 });
  const rows = h("div", { class: "replacements" });
  const addButton = h("button", { type: "button" }, "Add a rename");
  const kinds = datalist(uid("kinds"));
  fillDatalist(kinds, KINDS);

  function renumber() {
    [...rows.children].forEach((row, index) => {
      row.querySelector("legend").textContent = `Rename ${index + 1}`;
      for (const slot of row.querySelectorAll("[data-field]")) {
        const part = slot.dataset.part;
        const name = `nameReplacements[${index}].${part}`;
        slot.dataset.field = name;
        slot.querySelector("input").name = name;
      }
    });
  }

  function addRow(kind = "", from = "", to = "") {
    const kindInput = textInput(kind, { list: kinds.id });
    const fromInput = textInput(from, { required: true });
    const toInput = textInput(to, { required: true, maxlength: 59 });
    const parts = [
      ["from.kind", field({ label: "Kind", name: "from.kind", control: kindInput, hint: "Empty: any kind." })],
      ["from.name", field({ label: "Current name", name: "from.name", control: fromInput })],
      ["to", field({ label: "New name", name: "to", control: toInput })],
    ];
    for (const [part, node] of parts) node.dataset.part = part;
    const remove = h("button", { type: "button", class: "danger" }, "Remove");
    const row = h("fieldset", { class: "replacement" }, h("legend", {}, "Rename"),
      h("div", { class: "row" }, parts.map(([, node]) => node)), remove);
    remove.addEventListener("click", () => {
      row.remove();
      renumber();
      rows.dispatchEvent(new Event("input", { bubbles: true }));
      addButton.focus();
    });
    rows.append(row);
    renumber();
    return fromInput;
  }
  addButton.addEventListener("click", () => {
    addRow().focus();
    rows.dispatchEvent(new Event("input", { bubbles: true }));
  });

  const error = h("p", { class: "field-error", id: `${kinds.id}-error`, hidden: true });
  const node = h("fieldset", { class: "customization", dataset: { field: "customization" },
                               "aria-describedby": error.id },
    h("legend", {}, "New names"),
    h("p", { class: "hint" },
      "Each new name is prefix + (the rename's new name, or the old name) + suffix. Set at least one of them."),
    error,
    h("div", { class: "row" },
      field({ label: "Name prefix", name: "customization.namePrefix", control: prefixInput, hint: "e.g. copy-" }),
      field({ label: "Name suffix", name: "customization.nameSuffix", control: suffixInput, hint: "e.g. -copy" })),
    rows, addButton, kinds);

  function read() {
    const body = {};
    const customization = {};
    if (prefixInput.value) customization.namePrefix = prefixInput.value;
    if (suffixInput.value) customization.nameSuffix = suffixInput.value;
    if (Object.keys(customization).length) body.customization = customization;
    const replacements = [...rows.children].map((row) => {
      const [kind, from, to] = [...row.querySelectorAll("input")].map((input) => input.value.trim());
      return { from: kind ? { kind, name: from } : { name: from }, to };
    });
    if (replacements.length) body.nameReplacements = replacements;
    return body;
  }
  return { node, read };
}

/**
 * The VM snapshot field: suggests the namespace's VM snapshots and says what the chosen
 * one is; ``onKnown(snapshot)`` runs when the text names a known snapshot.
 */
function vmSnapshotPicker(ctx, ns, listId, onKnown = () => {}) {
  const snapshots = datalist(listId);
  const input = textInput(ctx.params.get("snapshot") || "", { required: true, list: snapshots.id });
  const about = h("span", { "aria-live": "polite" });
  let known = new Map();
  function describe() {
    const snap = known.get(input.value.trim());
    about.textContent = snap ? `A snapshot of ${snap.virtualMachineName}, ${snap.phase || "no phase yet"}.` : "";
    if (snap) onKnown(snap);
  }
  async function load() {
    const found = await names(ctx, "ListVirtualMachineSnapshots",
      `/v1/namespaces/${segment(ns.input.value.trim() || "demo")}/vm-snapshots`, (s) => s);
    known = new Map(found.map((s) => [s.name, s]));
    fillDatalist(snapshots, found.map((s) => s.name));
    describe();
  }
  input.addEventListener("input", describe);
  ns.input.addEventListener("change", load);
  load();
  return { input, about, snapshots };
}

function restoreVmForm(ctx) {
  const ns = namespaceField(ctx);
  const vmInput = textInput(ctx.params.get("vm") || "", { required: true });
  // Filled while the person is still in the snapshot field (typing or picking from the
  // list), so the VM field is ready before they reach it, never under their cursor.
  const { input: snapshotInput, about, snapshots } = vmSnapshotPicker(ctx, ns, "restore-vm-snapshots", (snap) => {
    if (!vmInput.value.trim()) vmInput.value = snap.virtualMachineName;
  });

  const read = () => {
    const namespace = ns.input.value.trim();
    const vm = vmInput.value.trim();
    const snapshot = snapshotInput.value.trim();
    return {
      path: `/v1/namespaces/${segment(namespace)}/virtual-machines/${segment(vm)}:restore`,
      body: { virtualMachineSnapshotName: snapshot },
      required: [["namespace", namespace], ["virtualMachineName", vm], ["virtualMachineSnapshotName", snapshot]],
    };
  };
  const form = h("form", { id: "restore-vm", novalidate: true, "aria-label": "Restore a VM" });
  const fields = h("div", { class: "row" }, ns.node,
    field({ label: "VM snapshot", name: "virtualMachineSnapshotName", control: snapshotInput, hint: about }),
    field({ label: "Virtual machine", name: "virtualMachineName", control: vmInput,
            hint: "The VM the snapshot was taken of; it must still exist with the same uid." }), snapshots);
  return h("div", {},
    h("p", {}, "Restores the virtual machine and its disks as the snapshot saved them. Its disks must be detached " +
      "from other VMs or absent, its IP and MAC addresses free."),
    twoStep(ctx, { form, fields, read, what: "Restore", action: "Restore", clone: false }));
}

function cloneVmForm(ctx) {
  const ns = namespaceField(ctx);
  const vmInput = textInput(ctx.params.get("vm") || "", { required: true });
  const naming = customizationFields(ctx, ctx.params.get("prefix") || "");
  const read = () => {
    const namespace = ns.input.value.trim();
    const vm = vmInput.value.trim();
    return {
      path: `/v1/namespaces/${segment(namespace)}/virtual-machines/${segment(vm)}:clone`,
      body: naming.read(),
      required: [["namespace", namespace], ["virtualMachineName", vm]],
    };
  };
  const form = h("form", { id: "clone-vm", novalidate: true, "aria-label": "Clone a VM" });
  const fields = h("div", {},
    h("div", { class: "row" }, ns.node,
      field({ label: "Virtual machine", name: "virtualMachineName", control: vmInput,
              hint: "It must be stopped. " + NAME_HINT })),
    naming.node);
  return h("div", {},
    h("p", {}, "Creates a copy of a stopped virtual machine and its disks under new names. The copy gets a new IP " +
      "address and new MAC addresses: reconfigure the guest's network afterwards."),
    twoStep(ctx, { form, fields, read, what: "Clone", action: "Clone", clone: true }));
}

function fromSnapshotForm(ctx) {
  const ns = namespaceField(ctx);
  const naming = customizationFields(ctx, ctx.params.get("prefix") || "");
  const { input: snapshotInput, about, snapshots } = vmSnapshotPicker(ctx, ns, "clone-vm-snapshots");
  const read = () => {
    const namespace = ns.input.value.trim();
    const snapshot = snapshotInput.value.trim();
    return {
      path: `/v1/namespaces/${segment(namespace)}/vm-snapshots/${segment(snapshot)}:clone`,
      body: naming.read(),
      required: [["namespace", namespace], ["virtualMachineSnapshotName", snapshot]],
    };
  };
  const form = h("form", { id: "vm-from-snapshot", novalidate: true, "aria-label": "Create a VM from a VM snapshot" });
  const fields = h("div", {},
    h("div", { class: "row" }, ns.node,
      field({ label: "VM snapshot", name: "virtualMachineSnapshotName", control: snapshotInput, hint: about }),
      snapshots),
    naming.node);
  return h("div", {},
    h("p", {}, "Creates a new virtual machine, with its disks and the other objects the snapshot holds, under new " +
      "names. The new objects get new IP and MAC addresses."),
    twoStep(ctx, { form, fields, read, what: "Creation of the VM", action: "Create the VM", clone: true }));
}

// ------------------------------------------------------------------ restore a disk (no dry run in the API)

function restoreDiskForm(ctx) {
  const ns = namespaceField(ctx);
  const snapshots = datalist("restore-disk-snapshots");
  const snapshotInput = textInput(ctx.params.get("diskSnapshot") || "", { required: true, list: snapshots.id });
  const nameInput = textInput(ctx.params.get("name") || "", { required: true });
  const sizeInput = textInput("", { inputmode: "text" });
  const classInput = textInput("");
  const plan = h("div", { class: "plan" });
  const box = problemBox();
  const button = h("button", { type: "submit", class: "primary" }, "Restore");
  const out = h("div", { class: "apply-out" });
  const said = h("p", { class: "visually-hidden", role: "status" });
  let known = new Map();
  let running = false;

  async function load() {
    const found = await names(ctx, "ListDiskSnapshots",
      `/v1/namespaces/${segment(ns.input.value.trim() || "demo")}/disk-snapshots`, (s) => s);
    known = new Map(found.map((s) => [s.name, s]));
    fillDatalist(snapshots, found.map((s) => s.name));
    describe();
  }

  function describe() {
    const snapshot = snapshotInput.value.trim();
    const source = known.get(snapshot);
    const disk = source ? `the source disk ${source.virtualDiskName}` : "the source disk";
    const name = nameInput.value.trim();
    clear(plan).append(
      h("h3", {}, "What will happen"),
      h("dl", { class: "facts" },
        h("dt", {}, "Creates"), h("dd", {}, name ? `a new VirtualDisk ${name}` : "a new VirtualDisk (name it above)",
          ` in ${ns.input.value.trim() || "—"}`),
        h("dt", {}, "From"), h("dd", {}, snapshot ? `the disk snapshot ${snapshot}` : "— (choose a disk snapshot)",
          source ? ` of ${source.virtualDiskName} (${source.phase || "no phase yet"})` : ""),
        h("dt", {}, "Size"), h("dd", {}, sizeInput.value.trim() || `the same as ${disk} (the default)`),
        h("dt", {}, "Storage class"),
        h("dd", {}, classInput.value.trim() || `the storage class of ${disk} (the default)`),
        h("dt", {}, "Changes"), h("dd", {}, "nothing that exists: the snapshot and the source disk stay as they are")),
      h("p", { class: "hint" }, "The API has no dry run for a disk restore: a taken name or a size smaller than the " +
        "original disk's is refused when you press Restore."));
  }

  const form = h("form", { id: "restore-disk", novalidate: true, "aria-label": "Restore a disk" },
    h("div", { class: "row" }, ns.node,
      field({ label: "Disk snapshot", name: "diskSnapshotName", control: snapshotInput }),
      field({ label: "New disk name", name: "name", control: nameInput, hint: NAME_HINT }), snapshots),
    h("div", { class: "row" },
      field({ label: "Size (optional)", name: "size", control: sizeInput,
              hint: "A quantity such as 20Gi, at least the original size. Empty: the source disk's size." }),
      field({ label: "Storage class (optional)", name: "storageClassName", control: classInput,
              hint: "Empty: the source disk's storage class." })),
    plan, button, box, said, out);

  form.addEventListener("input", describe);
  snapshotInput.addEventListener("change", describe);
  ns.input.addEventListener("change", load);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (running) return;
    clearProblem(box, form);
    const namespace = ns.input.value.trim();
    const body = { name: nameInput.value.trim(), diskSnapshotName: snapshotInput.value.trim() };
    if (sizeInput.value.trim()) body.size = sizeInput.value.trim();
    if (classInput.value.trim()) body.storageClassName = classInput.value.trim();
    if (missing(form, box, [["namespace", namespace], ["diskSnapshotName", body.diskSnapshotName],
                            ["name", body.name]])) return;
    running = true;
    button.disabled = true;
    clear(out).append(h("p", { class: "muted" }, "Restore: sending…"));
    try {
      const accepted = await call("POST", `/v1/namespaces/${segment(namespace)}/disks:restore`,
                                  { body, idempotencyKey: idempotencyKey(), signal: ctx.signal });
      const show = (op) => {
        clear(out).append(h("h3", {}, `Restore of ${body.name}`));
        say(said, out.appendChild(operationView(op, { clone: false, dryRun: false, what: "Restore" })));
      };
      show(accepted);
      await follow(ctx, accepted.id, show);
    } catch (error) {
      if (error.name === "AbortError") return;
      clear(out);
      showError(box, error, form);
    } finally {
      running = false;
      button.disabled = false;
    }
  });
  describe();
  load();
  return h("div", {},
    h("p", {}, "Creates a new VirtualDisk whose data source is a disk snapshot."), form);
}

// ------------------------------------------------------------------ the page

export default {
  async render(main, ctx) {
    useStylesheet(STYLE);
    const current = FORMS.find((f) => f.slug === ctx.args[0]) || FORMS[0];
    const keep = ctx.params.get("namespace") ? `?namespace=${encodeURIComponent(ctx.params.get("namespace"))}` : "";
    const tabs = h("nav", { class: "subnav", "aria-label": "Restore and clone forms" },
      h("ul", {}, FORMS.map((f) => h("li", {},
        h("a", { href: `#/restore/${f.slug}${keep}`, "aria-current": f === current ? "page" : null }, f.title)))));
    const section = h("section", { class: "card", "aria-labelledby": "restore-form-title" },
      h("h2", { id: "restore-form-title" }, current.title),
      ctx.served(current.method) ? current.build(ctx) : notAvailable(current.title));
    main.append(heading("Restore and clone"), tabs, section);
  },
};
