// A few DOM helpers. Text always goes in as text (never as HTML): every
// string shown comes from the wire.

export type Child = Node | string | number | null | undefined | false | Child[];
type Props = Record<string, string | number | boolean | null | undefined | ((ev: Event) => void)>;

function append(el: Element, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

function setProps(el: Element, props: Props | null | undefined): void {
  if (!props) return;
  for (const [k, v] of Object.entries(props)) {
    if (v === null || v === undefined || v === false) continue;
    if (typeof v === "function") el.addEventListener(k.replace(/^on/, ""), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props?: Props | null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  setProps(el, props);
  append(el, children);
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";

export function s(tag: string, props?: Props | null, ...children: Child[]): SVGElement {
  const el = document.createElementNS(SVG_NS, tag) as SVGElement;
  setProps(el, props);
  append(el, children);
  return el;
}

// Replace a container's children, keeping the keyboard focus on the element
// with the same data-key if it is rebuilt.
export function replaceKeepingFocus(container: Element, ...children: Child[]): void {
  const active = document.activeElement as HTMLElement | null;
  const key = active && container.contains(active) ? active.getAttribute("data-key") : null;
  const frag = document.createDocumentFragment();
  const tmp = document.createElement("div");
  append(tmp, children);
  while (tmp.firstChild) frag.appendChild(tmp.firstChild);
  container.replaceChildren(frag);
  if (key) {
    const again = container.querySelector<HTMLElement>(`[data-key="${CSS.escape(key)}"]`);
    again?.focus({ preventScroll: true });
  }
}

// Keyed list: one element per key, created once, updated in place, moved
// only when the order changes (a click in progress is never lost).
export function keyedList<T>(
  container: Element,
  items: T[],
  key: (item: T) => string,
  create: (item: T) => HTMLElement,
  update: (el: HTMLElement, item: T) => void,
): { created: string[]; removed: string[] } {
  const existing = new Map<string, HTMLElement>();
  for (const el of Array.from(container.children) as HTMLElement[]) {
    const k = el.dataset.key;
    if (k) existing.set(k, el);
  }
  const created: string[] = [];
  const wanted = new Set<string>();
  let prev: Element | null = null;
  for (const item of items) {
    const k = key(item);
    wanted.add(k);
    let el = existing.get(k);
    if (!el) {
      el = create(item);
      el.dataset.key = k;
      created.push(k);
    }
    update(el, item);
    const next: Element | null = prev ? prev.nextElementSibling : container.firstElementChild;
    if (next !== el) container.insertBefore(el, next);
    prev = el;
  }
  const removed: string[] = [];
  for (const [k, el] of existing)
    if (!wanted.has(k)) {
      el.remove();
      removed.push(k);
    }
  return { created, removed };
}

export function setText(el: Element | null, text: string): void {
  if (el && el.textContent !== text) el.textContent = text;
}

// ---- words for times ----

export function ago(ms: number | null): string {
  if (ms === null || !isFinite(ms)) return "never";
  return `${duration(Math.max(0, ms) / 1000)} ago`;
}

// 5 s, 59 s, 2 min 05 s, 1 h 02 min
export function duration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 120) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  const hrs = Math.floor(s / 3600);
  if (hrs < 48) return `${hrs} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
  return `${Math.floor(hrs / 24)} days`;
}

export function clock(ms: number): string {
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, "0");
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export function clockUs(us: number): string {
  return us ? clock(us / 1000) : "—";
}
