// The console's shell: the token gate, the page router (#/page/arg?query) and the
// capability list. Each page is a module in pages/ with
//   export default { render(main, ctx) }   -> optional cleanup function
// where ctx = { args, params, served(method), signal, navigate(hash) }; ``signal`` aborts
// when the person leaves the page, ending its streams.

import { call, session } from "./api.js";
import { field, heading, problemBox, showProblem } from "./components.js";
import { clear, h } from "./dom.js";

const PAGES = {
  snapshots: () => import("./pages/snapshots.js"),
  operations: () => import("./pages/operations.js"),
  restore: () => import("./pages/restore.js"),
  audit: () => import("./pages/audit.js"),
};
const DEFAULT_PAGE = "snapshots";

const main = document.getElementById("main");
const sessionArea = document.getElementById("session");
let capabilities = null;
let leave = null;   // aborts the current page's work
let atGate = false;   // the token form is showing (its own 401 is its own business)

async function servedMethods() {
  if (capabilities === null) {
    const response = await fetch("capabilities.json", { cache: "no-store" });
    capabilities = response.ok ? (await response.json()).methods : {};
  }
  return capabilities;
}

function parseHash() {
  const raw = window.location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?");
  const [page, ...args] = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { page: PAGES[page] ? page : DEFAULT_PAGE, args, params: new URLSearchParams(query) };
}

function markCurrent(page) {
  for (const link of document.querySelectorAll("nav a[data-page]")) {
    if (link.dataset.page === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function renderSession() {
  clear(sessionArea);
  if (!session.token) return;
  sessionArea.append(h("span", { class: "muted" }, "Token set for this tab"), " ",
    h("button", { type: "button", class: "link", onclick: () => { session.forget(); route(); } }, "Forget token"));
}

function tokenGate() {
  atGate = true;
  clear(main);
  markCurrent("");
  const input = h("input", { type: "password", autocomplete: "off", spellcheck: "false", required: true });
  const box = problemBox();
  const form = h("form", { class: "card narrow" },
    field({ label: "Bearer token", name: "token", control: input,
            hint: "Kept in this tab only (sessionStorage) and sent as Authorization: Bearer to the gateway's API." }),
    h("button", { type: "submit", class: "primary" }, "Use token"), box);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    session.token = input.value.trim();
    try {
      // Any answer but 401 means the token is known (the person may lack this one permission).
      await call("GET", "/v1/operations", { query: { pageSize: 1 } });
    } catch (error) {
      if (error.status === 401 || error.status === 0) {
        session.forget();
        showProblem(box, { ...error, fieldViolations: [{ field: "token", description: error.detail || error.title }] },
                    form);
        return;
      }
    }
    route();
  });
  main.append(heading("Sign in"), form);
  input.focus();
}

async function route() {
  if (leave) leave.abort();
  leave = new AbortController();
  renderSession();
  if (!session.token) { tokenGate(); return; }
  atGate = false;
  const { page, args, params } = parseHash();
  markCurrent(page);
  clear(main);
  const served = await servedMethods();
  const ctx = {
    args, params, signal: leave.signal,
    served: (method) => served[method] === true,
    navigate: (hash) => { window.location.hash = hash; },
  };
  try {
    const module = await PAGES[page]();
    await module.default.render(main, ctx);
  } catch (error) {
    if (error.name === "AbortError") return;
    const box = problemBox();
    main.append(box);
    showProblem(box, error);
  }
  main.focus({ preventScroll: true });
}

window.addEventListener("hashchange", route);
// A token refused later (revoked, expired): back to the gate, where the person can enter another.
window.addEventListener("dvp:unauthenticated", () => { if (!atGate) { session.forget(); route(); } });
route();
