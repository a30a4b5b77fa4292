// The Vigie dashboard: wiring of the connection, the model and the page.
import "./style.css";
import { loadConfig, missing, saveConfig, type Config } from "./config";
import { Connection, type ConnState } from "./conn";
import { ago, clock, clockUs, duration, h, keyedList, replaceKeepingFocus, setText } from "./dom";
import { renderMap } from "./map";
import { Model, postureOf, priorityWord, type IncidentView, type SiteView } from "./model";
import { encodeAck } from "./proto";
import { ackTopic, validId } from "./topics";

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

const STATE_WORD: Record<string, string> = {
  alarm: "ALARM",
  trouble: "TROUBLE",
  offline: "OFFLINE",
  normal: "NORMAL",
  unknown: "UNKNOWN",
};

interface PendingAck {
  state: "sending" | "sent" | "failed";
  text: string;
  at: number;
}

// For tests and for a curious operator (window.vigie in the console).
interface Debug {
  seen: Record<string, number>; // incident id -> Date.now() when first drawn
  conn: ConnState | null;
  acks: { topic: string; dispatch: string; incident: string; post: string; by: string }[];
  renders: number;
  model: Model;
}

let cfg: Config;
let model = new Model();
let conn: Connection | null = null;
let connState: ConnState | null = null;
const pending = new Map<string, PendingAck>();
const loadedAt = Date.now();
let reconnectedAt = 0;
const debug: Debug = { seen: {}, conn: null, acks: [], renders: 0, model };
(window as unknown as { vigie: Debug }).vigie = debug;

// ---- render scheduling: at most every 100 ms, and every second for ages ----

let renderTimer: number | null = null;
let lastRender = 0;

function scheduleRender(): void {
  if (renderTimer !== null) return;
  const wait = Math.max(0, lastRender + 100 - Date.now());
  renderTimer = window.setTimeout(() => {
    renderTimer = null;
    render();
  }, wait);
}

// ---- rendering ----

function badge(cls: string, text: string): HTMLElement {
  return h("span", { class: `badge ${cls}` }, text);
}

function render(): void {
  lastRender = Date.now();
  debug.renders++;
  const now = Date.now();
  const queue = model.queue();
  const sites = model.sites(now);
  renderHeader(queue, sites, now);
  renderBanner(now);
  renderQueue(queue, now);
  renderSites(sites);
  renderSide(sites, now);
}

function renderHeader(queue: IncidentView[], sites: SiteView[], now: number): void {
  setText($("clock"), clock(now));
  setText($("operator"), cfg?.operator || "—");
  const counts: Record<string, number> = {};
  for (const s of sites) counts[s.state] = (counts[s.state] ?? 0) + 1;
  const parts = ["alarm", "trouble", "offline", "unknown", "normal"]
    .filter((k) => counts[k])
    .map((k) => h("span", { class: `sum state-${k}` }, `${counts[k]} ${STATE_WORD[k]}`));
  const unacked = queue.filter((q) => q.state !== "acknowledged").length;
  const sig = JSON.stringify([counts, queue.length, unacked]);
  const sum = $("summary");
  if (sum.dataset.sig !== sig) {
    sum.dataset.sig = sig;
    sum.replaceChildren(
      ...parts,
      h("span", { class: "sum" }, `${queue.length} open incident${queue.length === 1 ? "" : "s"}${unacked ? `, ${unacked} unacknowledged` : ""}`),
    );
  }
  const worst = ["alarm", "trouble", "offline"].find((k) => counts[k]);
  document.title = `${unacked ? `(${unacked}) ` : ""}${worst ? STATE_WORD[worst] + " — " : ""}${cfg?.title || "Vigie"} live mesh`;

  const c = $("conn");
  const st = connState;
  let cls = "conn-wait",
    text = "not connected";
  if (st?.s === "connected") {
    cls = "conn-ok";
    text = "● Connected";
  } else if (st?.s === "connecting") {
    text = `Connecting to ${hostOf(cfg.brokerUrl)} …`;
  } else if (st?.s === "disconnected") {
    cls = "conn-down";
    text = `✖ DISCONNECTED · reconnecting`;
  } else if (st?.s === "refused") {
    cls = "conn-down";
    text = "✖ REFUSED"; // the banner and the form say why
  }
  c.className = `conn ${cls}`;
  c.title = `broker ${cfg?.brokerUrl ?? ""} as ${cfg?.username ?? ""}`;
  setText(c, text);
}

function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
}

function renderBanner(now: number): void {
  const b = $("banner");
  const st = connState;
  const app = $("app");
  if (st && (st.s === "disconnected" || st.s === "refused" || (st.s === "connecting" && now - st.since > 3000))) {
    const since = st.since;
    const lines =
      st.s === "refused"
        ? `Connection REFUSED by the broker: ${st.reason}. Check the user and password (button "change" above).`
        : `DISCONNECTED from the broker ${hostOf(cfg.brokerUrl)} for ${duration((now - since) / 1000)} (since ${clock(since)})` +
          (st.s === "disconnected" ? ` — ${st.reason}; reconnecting by itself (attempt ${Math.max(1, st.attempt)}).` : " — still trying.") +
          ` What you see is the picture at ${clock(since)} and may be out of date.`;
    b.className = "banner banner-down";
    setText(b, `⚠ ${lines}`);
    b.hidden = false;
    app.classList.add("stale");
  } else if (st?.s === "connected" && st.reconnected && now - reconnectedAt < 6000) {
    b.className = "banner banner-ok";
    setText(b, `✓ Reconnected to the broker at ${clock(reconnectedAt)}: the picture is live again.`);
    b.hidden = false;
    app.classList.remove("stale");
  } else {
    b.hidden = true;
    app.classList.remove("stale");
  }
}

function sinceFirst(inc: IncidentView, now: number): string {
  if (!inc.firstEventUs) return "—";
  return duration(now / 1000 - inc.firstEventUs / 1e6);
}

function levelText(inc: IncidentView): string {
  return `L${inc.level + 1}${inc.levelName ? ` ${inc.levelName}` : ""}`;
}

function incidentTitle(inc: IncidentView): string {
  const what = inc.trouble && inc.subject ? `${inc.kind} (${inc.subject})` : inc.kind;
  return [cap(what), inc.siteName || inc.site, inc.zoneName].filter(Boolean).join(" · ");
}

function cap(s: string): string {
  return s ? s[0].toUpperCase() + s.slice(1) : s;
}

function createIncidentRow(inc: IncidentView): HTMLElement {
  const id = inc.id;
  const li = h(
    "li",
    { class: "inc", tabindex: 0, "aria-labelledby": `inc-title-${id}`, "aria-describedby": `inc-meta-${id}` },
    h(
      "div",
      { class: "inc-side" },
      h("span", { class: "badge prio" }),
      h("span", { class: "age" }),
      h("span", { class: "age-label" }, "since first event"),
    ),
    h(
      "div",
      { class: "inc-main" },
      h("div", { class: "inc-title", id: `inc-title-${id}` }),
      h("div", { class: "inc-meta", id: `inc-meta-${id}` }),
      h("div", { class: "inc-extra" }),
      h("div", { class: "inc-disp" }),
      h(
        "div",
        { class: "inc-actions" },
        h("div", { class: "inc-ackstate", "aria-live": "polite" }),
        h("button", { type: "button", class: "ack", onclick: () => acknowledge(id) }),
      ),
    ),
  );
  return li;
}

function updateIncidentRow(li: HTMLElement, inc: IncidentView, now: number): void {
  const acked = inc.state === "acknowledged" || !!inc.ackedBy;
  li.className = `inc prio-${inc.priority.replace(/\W/g, "-")}${acked ? " acked" : ""}${inc.trouble ? " trouble" : ""}${
    now - inc.firstSeen < 4000 && inc.firstSeen - loadedAt > 1500 ? " new" : ""
  }`;
  li.dataset.incident = inc.id;
  const prio = li.querySelector(".prio")!;
  prio.className = `badge prio prio-${inc.priority.replace(/\W/g, "-")}`;
  setText(prio, inc.priority.toUpperCase());
  setText(li.querySelector(".age"), sinceFirst(inc, now));
  setText(li.querySelector(".inc-title"), incidentTitle(inc));
  const st = inc.state === "open" && inc.confirmed ? "confirmed" : inc.state;
  setText(
    li.querySelector(".inc-meta"),
    [
      st.toUpperCase(),
      `escalation ${levelText(inc)}`,
      inc.eventCount ? `${inc.eventCount} event${inc.eventCount === 1 ? "" : "s"}` : "",
      inc.trouble ? "trouble" : "",
      `id ${inc.id}`,
    ]
      .filter(Boolean)
      .join(" · "),
  );
  const extra = [
    inc.detectors.length ? `detectors ${inc.detectors.join(", ")}` : "",
    inc.attributes.length ? inc.attributes.join(" ") : "",
  ]
    .filter(Boolean)
    .join(" · ");
  setText(li.querySelector(".inc-extra"), extra);
  const d = inc.dispatch;
  setText(
    li.querySelector(".inc-disp"),
    d
      ? `Dispatched to ${d.post}${d.backup_for ? ` (backup of ${d.backup_for})` : ""} · attempt ${d.attempt} · ${clockUs(d.sent_us)}`
      : `No dispatch seen yet · an ack goes to post ${inc.ack.post}`,
  );
  const p = pending.get(inc.id);
  const ackState = li.querySelector(".inc-ackstate")!;
  const btn = li.querySelector<HTMLButtonElement>("button.ack")!;
  if (acked) {
    setText(ackState, `✓ Acknowledged${inc.ackedBy ? ` by ${inc.ackedBy}` : ""}${inc.ackedUs ? ` at ${clockUs(inc.ackedUs)}` : ""}`);
    ackState.className = "inc-ackstate ok";
    btn.disabled = true;
    setText(btn, "Acknowledged");
  } else if (p) {
    setText(ackState, p.text);
    ackState.className = `inc-ackstate ${p.state === "failed" ? "bad" : "wait"}`;
    btn.disabled = p.state === "sending";
    setText(btn, p.state === "failed" ? "Retry ack (A)" : p.state === "sending" ? "Sending…" : "Ack again (A)");
  } else {
    setText(ackState, "");
    ackState.className = "inc-ackstate";
    btn.disabled = false;
    setText(btn, "Acknowledge (A)");
  }
  btn.setAttribute("aria-label", `Acknowledge ${incidentTitle(inc)} as ${cfg?.operator || "operator"}`);
}

function renderQueue(queue: IncidentView[], now: number): void {
  const ol = $("queue");
  const { created } = keyedList(
    ol,
    queue,
    (i) => `inc-${i.id}`,
    createIncidentRow,
    (el, i) => updateIncidentRow(el, i, now),
  );
  for (const k of created) {
    const id = k.slice(4);
    if (!(id in debug.seen)) debug.seen[id] = Date.now();
    const inc = queue.find((q) => q.id === id);
    if (inc && now - loadedAt > 1500) announce(`New incident: ${inc.priority} ${incidentTitle(inc)}`);
  }
  setText($("queue-count"), queue.length ? `(${queue.length})` : "");
  $("queue-empty").hidden = queue.length > 0;

  const closed = model.recentlyClosed();
  const det = $("closed");
  det.hidden = closed.length === 0;
  const sig = closed.map((c) => c.id).join(",");
  const list = $("closed-list");
  if (list.dataset.sig !== sig) {
    list.dataset.sig = sig;
    list.replaceChildren(
      ...closed.map((c) =>
        h("li", null, `${incidentTitle(c)} · closed ${clockUs(model.incidents.get(c.id)?.msg.closed_us || 0)}${c.ackedBy ? ` · acknowledged by ${c.ackedBy}` : ""}`),
      ),
    );
  }
}

function siteCard(site: SiteView): HTMLElement {
  const online = site.nodes.filter((n) => n.health === "online" || n.health === "waiting").length;
  const lines: HTMLElement[] = [];
  lines.push(
    h(
      "div",
      { class: "site-head" },
      badge(`state state-${site.state}`, STATE_WORD[site.state]),
      h("strong", { class: "site-name" }, site.name),
      site.name !== site.id ? h("span", { class: "muted" }, site.id) : null,
      site.region ? h("span", { class: "muted" }, `· ${site.region}`) : null,
    ),
  );
  lines.push(
    h(
      "div",
      { class: "site-facts" },
      h("span", { class: `posture posture-${site.posture}` }, `Posture ${site.posture.toUpperCase()}`),
      h("span", null, site.incidents.length ? `${site.incidents.length} open incident${site.incidents.length === 1 ? "" : "s"}` : "no open incident"),
      h("span", { class: `bridge bridge-${site.bridge}` }, `bridge ${site.bridge.toUpperCase()}`),
      h("span", null, site.nodes.length ? `nodes ${online}/${site.nodes.length} online` : "no node seen"),
    ),
  );
  if (site.incidents.length)
    lines.push(
      h(
        "ul",
        { class: "site-incs plain" },
        site.incidents.slice(0, 4).map((i) =>
          h("li", null, badge(`prio prio-${i.priority.replace(/\W/g, "-")}`, i.priority.toUpperCase()), ` ${cap(i.kind)} · ${i.zoneName || i.subject || "—"} · ${levelText(i)}`),
        ),
      ),
    );
  if (site.uncovered.length)
    lines.push(h("div", { class: "gaps" }, h("strong", null, "Coverage gaps: "), site.uncovered.join(", ")));
  else if (site.nodes.length) lines.push(h("div", { class: "muted small" }, "Coverage: every configured zone has a sensor"));
  lines.push(
    h(
      "div",
      { class: "muted small" },
      site.stateFrom === "relay"
        ? `state from the relay, ${ago(site.statusAgeMs)}`
        : site.stateFrom === "mesh"
          ? "state judged from node births, heartbeats and incidents (no relay status yet)"
          : "nothing heard from this site yet",
    ),
  );
  return h("li", { class: `site state-${site.state}`, id: `site-${site.id}`, "data-key": `site-${site.id}` }, lines);
}

let mapSig = "";

function renderSites(sites: SiteView[]): void {
  setText($("sites-count"), sites.length ? `(${sites.length})` : "");
  const mapEl = $("map");
  const width = mapEl.clientWidth - 20; // the padding
  const sig = JSON.stringify([
    width,
    sites.map((s) => [s.id, s.name, s.state, s.posture, s.location, s.incidents.map((i) => i.zone), s.uncovered, s.zones.length]),
  ]);
  if (sig !== mapSig && width > 0) {
    mapSig = sig;
    replaceKeepingFocus(mapEl, renderMap(sites, width));
  }
  const ul = $("sites");
  if (!sites.length) {
    replaceKeepingFocus(ul, h("li", { class: "empty" }, "No museum heard from yet."));
    return;
  }
  replaceKeepingFocus(ul, sites.map((s) => siteCard(s)));
}

function renderSide(sites: SiteView[], now: number): void {
  // Pattern alerts.
  const pats = model.patternViews();
  setText($("patterns-count"), pats.filter((p) => p.active).length ? `(${pats.filter((p) => p.active).length} active)` : "");
  replaceKeepingFocus(
    $("patterns"),
    pats.length
      ? pats.map((p) =>
          h(
            "li",
            { class: `pattern ${p.active ? "active" : "ended"} prio-${priorityWord(p.priority).replace(/\W/g, "-")}` },
            h(
              "div",
              { class: "pattern-head" },
              badge(`prio prio-${priorityWord(p.priority).replace(/\W/g, "-")}`, priorityWord(p.priority).toUpperCase()),
              h("strong", null, p.title || p.rule || p.id),
              h("span", { class: "muted" }, p.active ? "ACTIVE" : "ended"),
            ),
            p.explanation ? h("p", { class: "explain" }, p.explanation) : null,
            h(
              "div",
              { class: "small" },
              [
                p.sites.length ? `sites ${p.sites.map((s) => model.siteName(s)).join(", ")}` : "",
                p.incidents.length ? `${p.incidents.length} incident${p.incidents.length === 1 ? "" : "s"}` : "",
                postureOf(p.posture) !== "unknown" ? `posture ${postureOf(p.posture).toUpperCase()}` : "",
                p.rule ? `rule ${p.rule}` : "",
                p.updated_us ? `updated ${clockUs(p.updated_us)}` : "",
              ]
                .filter(Boolean)
                .join(" · "),
            ),
            p.instructions.length ? h("ul", { class: "instr" }, p.instructions.map((i) => h("li", null, i))) : null,
          ),
        )
      : [h("li", { class: "empty" }, "No pattern alert.")],
  );

  // Site alerts (what the relay told the museums' guards).
  const alerts = model.alerts.slice(0, 8);
  replaceKeepingFocus(
    $("alerts"),
    alerts.length
      ? alerts.map((a) =>
          h(
            "li",
            { class: "alert" },
            h("div", null, h("strong", null, a.msg.title || "Alert"), " ", h("span", { class: "muted" }, `${model.siteName(a.msg.site)} · ${clockUs(a.msg.time_us) || clock(a.at)}`)),
            a.msg.text ? h("div", { class: "small" }, a.msg.text) : null,
            a.msg.instructions.length ? h("ul", { class: "instr" }, a.msg.instructions.map((i) => h("li", null, i))) : null,
          ),
        )
      : [h("li", { class: "empty" }, "No site alert since this page opened.")],
  );

  // Health: nodes, bridges, posts.
  const nodes = sites.flatMap((s) => s.nodes);
  const bridges = model.bridgeViews(now);
  const posts = model.postViews(now);
  const healthWord: Record<string, string> = { online: "ONLINE", lost: "LOST", offline: "OFFLINE", waiting: "ONLINE" };
  const healthCls: Record<string, string> = { online: "normal", lost: "alarm", offline: "offline", waiting: "normal" };
  replaceKeepingFocus(
    $("health"),
    h("h3", null, `Nodes (${nodes.length})`),
    nodes.length
      ? h(
          "table",
          { class: "tbl" },
          h("thead", null, h("tr", null, h("th", null, "node"), h("th", null, "state"), h("th", null, "heartbeat"), h("th", null, "outbox"))),
          h(
            "tbody",
            null,
            nodes.map((n) =>
              h(
                "tr",
                null,
                h("td", null, `${n.site}/${n.node}`, n.path ? h("span", { class: "muted" }, ` ${n.path}`) : null),
                h("td", null, badge(`state state-${healthCls[n.health]}`, healthWord[n.health]), n.reason ? h("div", { class: "small muted" }, n.reason) : null),
                h("td", null, n.lastHeartbeatAgeMs === null ? (n.health === "waiting" ? "awaited" : "—") : ago(n.lastHeartbeatAgeMs)),
                h("td", null, n.outboxPending === null ? "—" : String(n.outboxPending)),
              ),
            ),
          ),
        )
      : h("p", { class: "empty" }, "No node heard from yet."),
    h("h3", null, `Bridges (${bridges.length})`),
    bridges.length
      ? h(
          "ul",
          { class: "plain" },
          bridges.map((b) =>
            h("li", null, badge(`state state-${b.up ? "normal" : "alarm"}`, b.up ? "UP" : "DOWN"), ` ${b.site ? model.siteName(b.site) : b.connection}`, h("span", { class: "muted small" }, ` since ${ago(b.ageMs)}`)),
          ),
        )
      : h("p", { class: "empty" }, "No bridge notification seen."),
    h("h3", null, `Posts (${posts.length})`),
    posts.length
      ? h(
          "ul",
          { class: "plain" },
          posts.map((p) =>
            h(
              "li",
              null,
              badge(`state state-${p.health === "online" ? "normal" : p.health === "offline" ? "alarm" : "unknown"}`, p.health.toUpperCase()),
              ` ${p.name || p.post}`,
              p.name ? h("span", { class: "muted" }, ` ${p.post}`) : null,
              p.reason ? h("span", { class: "muted small" }, ` (${p.reason})`) : null,
              p.lastDispatchAgeMs !== null ? h("span", { class: "muted small" }, ` · last dispatch ${ago(p.lastDispatchAgeMs)}`) : null,
            ),
          ),
        )
      : h("p", { class: "empty" }, "No police post seen."),
    model.badCount
      ? h(
          "div",
          { class: "bad" },
          h("h3", null, `Unreadable messages (${model.badCount})`),
          h("ul", { class: "plain small" }, model.bad.map((b) => h("li", null, `${clock(b.at)} ${b.topic}: ${b.reason}`))),
        )
      : null,
  );
}

// ---- acknowledging ----

async function acknowledge(id: string): Promise<void> {
  const e = model.incidents.get(id);
  if (!e) return;
  const inc = { ...e.msg, id: e.msg.id || id };
  const operator = cfg.operator.trim();
  if (!operator) {
    showLogin("Enter your name: acknowledgements carry it.");
    return;
  }
  const { topicPost, ack } = model.buildAck(inc, operator, Date.now());
  if (!validId(topicPost)) {
    pending.set(id, { state: "failed", text: `Cannot ack: post id "${topicPost}" is not valid`, at: Date.now() });
    scheduleRender();
    return;
  }
  if (!conn || !conn.connected()) {
    pending.set(id, { state: "failed", text: "✖ Not connected to the broker: ack NOT sent. Use the post console, or retry once connected.", at: Date.now() });
    scheduleRender();
    return;
  }
  const topic = ackTopic(topicPost);
  pending.set(id, { state: "sending", text: `Sending ack to ${topicPost} as ${operator}…`, at: Date.now() });
  scheduleRender();
  try {
    await conn.publish(topic, encodeAck(ack));
    debug.acks.push({ topic, dispatch: ack.dispatch, incident: ack.incident, post: ack.post, by: ack.by });
    pending.set(id, { state: "sent", text: `Ack sent to ${topicPost} as ${operator} at ${clock(Date.now())}; waiting for the relay to confirm…`, at: Date.now() });
    announce(`Acknowledgement sent for ${id}`);
  } catch (err) {
    pending.set(id, { state: "failed", text: `✖ Ack not confirmed by the broker: ${(err as Error).message}`, at: Date.now() });
  }
  scheduleRender();
}

// ---- keyboard ----

function queueRows(): HTMLElement[] {
  return Array.from($("queue").querySelectorAll<HTMLElement>("li.inc"));
}

function currentRow(): HTMLElement | null {
  const a = document.activeElement as HTMLElement | null;
  return a ? a.closest<HTMLElement>("#queue li.inc") : null;
}

function onKey(ev: KeyboardEvent): void {
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const t = ev.target as HTMLElement;
  if (!$("login").hidden) return;
  if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.isContentEditable)) return;
  const rows = queueRows();
  const cur = currentRow();
  const idx = cur ? rows.indexOf(cur) : -1;
  switch (ev.key) {
    case "ArrowDown":
    case "j":
    case "J":
      if (rows.length) rows[Math.min(rows.length - 1, idx + 1)].focus();
      ev.preventDefault();
      break;
    case "ArrowUp":
    case "k":
    case "K":
      if (rows.length) rows[Math.max(0, idx - 1)].focus();
      ev.preventDefault();
      break;
    case "g":
    case "G":
      (rows[0] ?? $("queue-h")).focus();
      ev.preventDefault();
      break;
    case "a":
    case "A":
      ev.preventDefault();
      if (cur?.dataset.incident) {
        void acknowledge(cur.dataset.incident);
      } else if (rows.length) {
        const first = rows.find((r) => !r.classList.contains("acked")) ?? rows[0];
        first.focus();
        announce("Incident selected: press A again to acknowledge it.");
      }
      break;
  }
}

let announceTimer = 0;
function announce(text: string): void {
  const el = $("announce");
  el.textContent = text;
  window.clearTimeout(announceTimer);
  announceTimer = window.setTimeout(() => (el.textContent = ""), 5000);
}

// ---- login form and connection ----

function showLogin(error?: string, credentialsRefused = false): void {
  const form = $<HTMLFormElement>("login-form");
  for (const k of ["operator", "brokerUrl", "username", "password", "ackPost"] as const) {
    const input = form.elements.namedItem(k) as HTMLInputElement;
    input.value = credentialsRefused && k === "password" ? "" : cfg[k] ?? "";
  }
  const err = $("login-error");
  err.hidden = !error;
  setText(err, error ?? "");
  $("login").hidden = false;
  const first = Array.from(form.querySelectorAll("input")).find((i) => !i.value) ?? form.querySelector("input");
  first?.focus();
}

function startConnection(): void {
  conn?.stop();
  model = new Model(cfg.ackPost || "dashboard");
  debug.model = model;
  mapSig = "";
  connState = null;
  conn = new Connection(cfg, {
    message(topic, payload) {
      model.apply(topic, payload, Date.now());
      scheduleRender();
    },
    subscribed() {
      // Retained messages follow the SUBACK at once; 2 s is plenty.
      const epoch = model.epoch;
      if (epoch > 1)
        window.setTimeout(() => {
          if (model.epoch === epoch && model.sweep()) scheduleRender();
        }, 2000);
    },
    state(st) {
      if (st.s === "connected") model.newEpoch();
      if (st.s === "connected" && st.reconnected) {
        reconnectedAt = Date.now();
        announce("Reconnected to the broker.");
      }
      if (st.s === "disconnected" && connState?.s === "connected") announce("Disconnected from the broker.");
      connState = st;
      debug.conn = st;
      if (st.s === "refused") showLogin(`The broker refused the connection: ${st.reason}.`, true);
      scheduleRender();
    },
  });
  conn.start();
  scheduleRender();
}

async function main(): Promise<void> {
  cfg = await loadConfig();
  document.addEventListener("keydown", onKey);
  $("change").addEventListener("click", () => showLogin());
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const form = ev.target as HTMLFormElement;
    const next = { ...cfg };
    for (const k of ["operator", "brokerUrl", "username", "password", "ackPost"] as const)
      next[k] = (form.elements.namedItem(k) as HTMLInputElement).value.trim();
    if (next.ackPost && !validId(next.ackPost)) {
      showLogin("The post id is made of a-z, 0-9, - and _.");
      return;
    }
    const miss = missing(next);
    if (miss.length) {
      cfg = next;
      showLogin(`Missing: ${miss.join(", ")}.`);
      return;
    }
    cfg = next;
    saveConfig(cfg);
    $("login").hidden = true;
    startConnection();
  });
  window.setInterval(render, 1000);
  window.addEventListener("resize", scheduleRender);
  const miss = missing(cfg);
  if (miss.length) {
    render();
    showLogin(cfg.operator ? `Missing: ${miss.join(", ")}.` : undefined);
    return;
  }
  startConnection();
}

void main();

