// Building the page without innerHTML: every value from the API lands as text, never markup.

/**
 * h("button", {class: "primary", onclick: f, "aria-label": "x"}, "Create", child, ...)
 * Props: class, text, on* (listeners), dataset (object), anything else as an attribute
 * (true -> "", false/null/undefined -> absent). Children: nodes, strings, arrays, null.
 */
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = String(value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (key === "value" && "value" in node) node.value = value;
    else if (key === "checked" || key === "disabled" || key === "selected") node[key] = Boolean(value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node) {
  while (node.firstChild) node.firstChild.remove();
  return node;
}

/** A unique id for label/field pairs. */
let counter = 0;
export function uid(prefix) {
  counter += 1;
  return `${prefix}-${counter}`;
}

/** Load a page's own stylesheet once (CSP allows only this origin's files). */
export function useStylesheet(href) {
  if (!document.head.querySelector(`link[href="${href}"]`)) {
    document.head.append(h("link", { rel: "stylesheet", href }));
  }
}

/** Wait ``ms``; throws AbortError at once if ``signal`` aborts (the person left the page). */
export function pause(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) { reject(new DOMException("left the page", "AbortError")); return; }
    const stop = () => { clearTimeout(timer); reject(new DOMException("left the page", "AbortError")); };
    const timer = setTimeout(() => { if (signal) signal.removeEventListener("abort", stop); resolve(); }, ms);
    if (signal) signal.addEventListener("abort", stop, { once: true });
  });
}
