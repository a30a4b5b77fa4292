// What the dashboard knows about the mesh: every message it reads, folded
// into maps, and the views the page draws from them. No DOM here (unit tested).
import { decode, decodeHeartbeat } from "./proto";
import { bridgeSite, parseTopic } from "./topics";
import type {
  AckMsg,
  DispatchMsg,
  Enum,
  HeartbeatBodyMsg,
  IncidentMsg,
  Location,
  NodeStateMsg,
  PatternAlertMsg,
  PostStateMsg,
  SiteAlertMsg,
  SiteStatusMsg,
  Zone,
} from "./types";

export type SiteState = "alarm" | "trouble" | "offline" | "normal" | "unknown";
export type Posture = "normal" | "heightened" | "critical" | "unknown";
export type NodeHealthState = "online" | "lost" | "offline" | "waiting";
export type PostHealth = "online" | "offline" | "unknown";

export const DEFAULT_REPORTING_MS = 10_000; // DESIGN.md: default reporting time
const MAX_ALERTS = 30;
const MAX_BAD = 5;

interface Stamped<T> {
  msg: T;
  at: number; // arrival, browser clock (ms)
  epoch?: number; // connection it arrived on (retained state)
}

interface NodeEntry {
  site: string;
  node: string;
  state?: Stamped<NodeStateMsg>;
  hb?: Stamped<HeartbeatBodyMsg>;
}

export interface BadMessage {
  topic: string;
  reason: string;
  at: number;
}

export interface AckTarget {
  post: string;
  dispatch: string;
  fromDispatch: boolean; // false: the configured default post
}

export interface IncidentView {
  id: string;
  site: string;
  siteName: string;
  zone: string;
  zoneName: string;
  kind: string;
  priority: string; // critical high medium low unspecified
  priorityRank: number;
  state: string; // open confirmed acknowledged closed unspecified
  confirmed: boolean;
  trouble: boolean;
  subject: string;
  firstEventUs: number;
  lastEventUs: number;
  level: number; // 0-based, as on the wire
  levelName: string;
  eventCount: number;
  detectors: string[];
  attributes: string[];
  ackedBy: string;
  ackedUs: number;
  dispatch: DispatchMsg | null;
  ack: AckTarget;
  firstSeen: number; // when this page first saw it (ms)
}

export interface NodeView {
  site: string;
  node: string;
  health: NodeHealthState;
  reason: string; // why offline / lost
  lastHeartbeatAgeMs: number | null;
  outboxPending: number | null;
  path: string;
  version: string;
  uncovered: string[];
}

export interface SiteView {
  id: string;
  name: string;
  state: SiteState;
  stateFrom: "relay" | "mesh" | "none";
  posture: Posture;
  location: Location | null;
  region: string;
  incidents: IncidentView[];
  uncovered: string[];
  bridge: "up" | "down" | "unknown";
  nodes: NodeView[];
  statusAgeMs: number | null;
  zones: Zone[];
}

export interface PostView {
  post: string;
  name: string;
  health: PostHealth;
  reason: string;
  lastDispatchAgeMs: number | null;
}

export interface BridgeView {
  connection: string;
  site: string | null;
  up: boolean;
  ageMs: number;
}

// ---- enum names to words ----

function enumWord(v: Enum, prefix: string): string {
  if (typeof v === "number") return v === 0 ? "unspecified" : `unknown (${v})`;
  const s = v.startsWith(prefix) ? v.slice(prefix.length) : v;
  return s.toLowerCase().replace(/_/g, " ");
}

export const kindWord = (v: Enum): string => enumWord(v, "KIND_");
export const priorityWord = (v: Enum): string => enumWord(v, "PRIORITY_");
export const incidentStateWord = (v: Enum): string => enumWord(v, "INCIDENT_");

const PRIORITY_RANK: Record<string, number> = {
  PRIORITY_CRITICAL: 4,
  PRIORITY_HIGH: 3,
  PRIORITY_MEDIUM: 2,
  PRIORITY_LOW: 1,
};

export function priorityRank(v: Enum): number {
  return typeof v === "string" ? PRIORITY_RANK[v] ?? 0 : 0;
}

const SITE_STATE: Record<string, SiteState> = {
  SITE_NORMAL: "normal",
  SITE_ALARM: "alarm",
  SITE_TROUBLE: "trouble",
  SITE_OFFLINE: "offline",
};

const POSTURE: Record<string, Posture> = {
  POSTURE_NORMAL: "normal",
  POSTURE_HEIGHTENED: "heightened",
  POSTURE_CRITICAL: "critical",
};
const POSTURE_RANK: Record<Posture, number> = { unknown: 0, normal: 1, heightened: 2, critical: 3 };

export function postureOf(v: Enum): Posture {
  return typeof v === "string" ? POSTURE[v] ?? "unknown" : "unknown";
}

function maxPosture(a: Posture, b: Posture): Posture {
  return POSTURE_RANK[b] > POSTURE_RANK[a] ? b : a;
}

export const SITE_STATE_RANK: Record<SiteState, number> = {
  alarm: 5,
  trouble: 4,
  offline: 3,
  unknown: 2,
  normal: 1,
};

export function isClosed(inc: IncidentMsg): boolean {
  return inc.state === "INCIDENT_CLOSED";
}

export function isAcked(inc: { state: Enum; acked_by: string }): boolean {
  return inc.state === "INCIDENT_ACKNOWLEDGED" || inc.acked_by !== "";
}

// ---- the model ----

export class Model {
  statuses = new Map<string, Stamped<SiteStatusMsg>>();
  nodes = new Map<string, NodeEntry>(); // "site/node"
  posts = new Map<string, Stamped<PostStateMsg>>();
  incidents = new Map<string, Stamped<IncidentMsg> & { firstSeen: number }>();
  dispatches = new Map<string, Stamped<DispatchMsg>>(); // latest per incident
  postLastDispatch = new Map<string, number>(); // post -> arrival ms
  acks = new Map<string, Stamped<AckMsg>>(); // latest seen per incident
  patterns = new Map<string, Stamped<PatternAlertMsg>>();
  alerts: Stamped<SiteAlertMsg>[] = [];
  bridges = new Map<string, { up: boolean; at: number; epoch?: number }>();
  bad: BadMessage[] = [];
  badCount = 0;
  messages = 0;

  // Connection count: retained state is sent anew at every (re)subscription.
  epoch = 0;

  constructor(public defaultPost = "dashboard") {}

  // A new connection: what comes now is the broker's retained picture.
  newEpoch(): void {
    this.epoch++;
  }

  // Some time after the subscriptions of a reconnection were granted, every
  // retained message has arrived again: what did not come back was cleared
  // while this page was away (an incident removed, a bridge notification the
  // broker did not keep across its restart). Returns how many were dropped.
  sweep(): number {
    const e = this.epoch;
    let n = 0;
    const old = (x: { epoch?: number } | undefined) => !!x && x.epoch !== undefined && x.epoch < e;
    for (const m of [this.statuses, this.incidents, this.posts, this.patterns, this.bridges] as Map<string, { epoch?: number }>[])
      for (const [k, v] of m)
        if (old(v)) {
          m.delete(k);
          n++;
        }
    for (const [k, node] of this.nodes)
      if (old(node.state)) {
        node.state = undefined;
        n++;
        if (!node.hb) this.nodes.delete(k);
      }
    return n;
  }

  // Fold one MQTT message in. Returns false when it was not understood
  // (recorded in `bad`; nothing else changes).
  apply(topic: string, payload: Uint8Array, now: number): boolean {
    const t = parseTopic(topic);
    if (t.kind === "other") return false;
    this.messages++;
    const empty = payload.length === 0;
    try {
      switch (t.kind) {
        case "status":
          if (empty) this.statuses.delete(t.site);
          else this.statuses.set(t.site, { msg: decode<SiteStatusMsg>("SiteStatus", payload), at: now, epoch: this.epoch });
          return true;
        case "nodeState": {
          const e = this.node(t.site, t.node);
          if (empty) e.state = undefined;
          else e.state = { msg: decode<NodeStateMsg>("NodeState", payload), at: now, epoch: this.epoch };
          if (!e.state && !e.hb) this.nodes.delete(`${t.site}/${t.node}`);
          return true;
        }
        case "heartbeat": {
          if (empty) return true;
          const body = decodeHeartbeat<HeartbeatBodyMsg>(payload);
          this.node(t.site, t.node).hb = { msg: body, at: now };
          return true;
        }
        case "incident": {
          if (empty) {
            this.incidents.delete(t.id);
            return true;
          }
          const msg = decode<IncidentMsg>("Incident", payload);
          const old = this.incidents.get(t.id);
          this.incidents.set(t.id, { msg, at: now, firstSeen: old ? old.firstSeen : now, epoch: this.epoch });
          return true;
        }
        case "dispatch": {
          if (empty) return true;
          const msg = decode<DispatchMsg>("Dispatch", payload);
          if (!msg.post) msg.post = t.post;
          this.postLastDispatch.set(t.post, now);
          const key = msg.incident || msg.id.replace(/-l\d+$/, "");
          const old = this.dispatches.get(key);
          // The latest by the relay's send time; equal times: the later arrival.
          if (!old || msg.sent_us >= old.msg.sent_us) this.dispatches.set(key, { msg, at: now });
          return true;
        }
        case "ack": {
          if (empty) return true;
          const msg = decode<AckMsg>("Ack", payload);
          const key = msg.incident || msg.dispatch.replace(/-l\d+$/, "");
          if (key) this.acks.set(key, { msg, at: now });
          return true;
        }
        case "postState":
          if (empty) this.posts.delete(t.post);
          else this.posts.set(t.post, { msg: decode<PostStateMsg>("PostState", payload), at: now, epoch: this.epoch });
          return true;
        case "pattern":
          if (empty) this.patterns.delete(t.id);
          else this.patterns.set(t.id, { msg: decode<PatternAlertMsg>("PatternAlert", payload), at: now, epoch: this.epoch });
          return true;
        case "siteAlert": {
          if (empty) return true;
          const msg = decode<SiteAlertMsg>("SiteAlert", payload);
          if (!msg.site) msg.site = t.site;
          // A re-sent alert (same id) replaces the one shown.
          this.alerts = this.alerts.filter((a) => !(a.msg.id && a.msg.id === msg.id && a.msg.site === msg.site));
          this.alerts.unshift({ msg, at: now });
          if (this.alerts.length > MAX_ALERTS) this.alerts.length = MAX_ALERTS;
          return true;
        }
        case "bridge": {
          if (empty) {
            this.bridges.delete(t.connection);
            return true;
          }
          const text = new TextDecoder().decode(payload).trim();
          if (text !== "0" && text !== "1") throw new Error(`bridge state is "${text.slice(0, 20)}", not 0 or 1`);
          this.bridges.set(t.connection, { up: text === "1", at: now, epoch: this.epoch });
          return true;
        }
      }
    } catch (e) {
      this.badCount++;
      this.bad.unshift({ topic, reason: e instanceof Error ? e.message : String(e), at: now });
      if (this.bad.length > MAX_BAD) this.bad.length = MAX_BAD;
      return false;
    }
    return false;
  }

  private node(site: string, node: string): NodeEntry {
    const k = `${site}/${node}`;
    let e = this.nodes.get(k);
    if (!e) {
      e = { site, node };
      this.nodes.set(k, e);
    }
    return e;
  }

  // ---- views ----

  siteIds(): string[] {
    const ids = new Set<string>(this.statuses.keys());
    for (const e of this.nodes.values()) ids.add(e.site);
    for (const i of this.incidents.values()) if (i.msg.site && !isClosed(i.msg)) ids.add(i.msg.site);
    for (const c of this.bridges.keys()) {
      const s = bridgeSite(c);
      if (s) ids.add(s);
    }
    return [...ids];
  }

  siteName(site: string): string {
    const st = this.statuses.get(site);
    if (st?.msg.name) return st.msg.name;
    for (const d of this.dispatches.values()) if (d.msg.site === site && d.msg.site_name) return d.msg.site_name;
    return site;
  }

  zoneInfo(site: string, zone: string): Zone | null {
    for (const d of this.dispatches.values())
      if (d.msg.site === site && d.msg.zone && d.msg.zone.id === zone) return d.msg.zone;
    for (const e of this.nodes.values()) {
      if (e.site !== site || !e.state) continue;
      const z = e.state.msg.zones.find((z) => z.id === zone);
      if (z) return z;
    }
    return null;
  }

  ackTarget(inc: IncidentMsg): AckTarget {
    const d = this.dispatches.get(inc.id);
    if (d) return { post: d.msg.post, dispatch: d.msg.id || `${inc.id}-l${d.msg.level}`, fromDispatch: true };
    return { post: this.defaultPost, dispatch: `${inc.id}-l${inc.level}`, fromDispatch: false };
  }

  buildAck(inc: IncidentMsg, operator: string, nowMs: number): { topicPost: string; ack: AckMsg } {
    const t = this.ackTarget(inc);
    return {
      topicPost: t.post,
      ack: {
        dispatch: t.dispatch,
        incident: inc.id,
        post: t.post,
        by: operator,
        time_us: Math.round(nowMs * 1000),
        note: "",
        source: "dashboard",
      },
    };
  }

  incidentView(id: string): IncidentView | null {
    const e = this.incidents.get(id);
    if (!e) return null;
    const m = e.msg;
    const z = m.zone ? this.zoneInfo(m.site, m.zone) : null;
    return {
      id: m.id || id,
      site: m.site,
      siteName: m.site ? this.siteName(m.site) : "",
      zone: m.zone,
      zoneName: z?.name || m.zone,
      kind: kindWord(m.kind),
      priority: priorityWord(m.priority),
      priorityRank: priorityRank(m.priority),
      state: incidentStateWord(m.state),
      confirmed: m.confirmed,
      trouble: m.trouble,
      subject: m.subject,
      firstEventUs: m.first_event_us,
      lastEventUs: m.last_event_us,
      level: m.level,
      levelName: m.level_name,
      eventCount: m.event_count,
      detectors: m.detectors,
      attributes: m.attributes.map((a) => `${a.key}=${a.value}`),
      ackedBy: m.acked_by,
      ackedUs: m.acked_us,
      dispatch: this.dispatches.get(m.id || id)?.msg ?? null,
      ack: this.ackTarget({ ...m, id: m.id || id }),
      firstSeen: e.firstSeen,
    };
  }

  // Open incidents (not closed): highest priority first; within a priority
  // the unacknowledged before the acknowledged, then the oldest first.
  queue(): IncidentView[] {
    const out: IncidentView[] = [];
    for (const [id, e] of this.incidents) if (!isClosed(e.msg)) out.push(this.incidentView(id)!);
    out.sort(
      (a, b) =>
        b.priorityRank - a.priorityRank ||
        Number(a.state === "acknowledged") - Number(b.state === "acknowledged") ||
        (a.firstEventUs || Infinity) - (b.firstEventUs || Infinity) ||
        a.id.localeCompare(b.id),
    );
    return out;
  }

  recentlyClosed(limit = 5): IncidentView[] {
    const out: IncidentView[] = [];
    for (const [id, e] of this.incidents) if (isClosed(e.msg)) out.push(this.incidentView(id)!);
    const closedAt = (v: IncidentView) => this.incidents.get(v.id)?.msg.closed_us || v.lastEventUs;
    out.sort((a, b) => closedAt(b) - closedAt(a));
    return out.slice(0, limit);
  }

  nodeView(e: NodeEntry, now: number, relay?: SiteStatusMsg): NodeView {
    const st = e.state?.msg;
    const hb = e.hb;
    const rh = relay?.nodes.find((n) => n.node === e.node);
    const reporting = hb?.msg.reporting_time_ms || st?.reporting_time_ms || DEFAULT_REPORTING_MS;
    let health: NodeHealthState;
    let reason = "";
    const hbAge = hb ? now - hb.at : null;
    // A death (LWT, shutdown) after the last heartbeat wins; a heartbeat after
    // it means the node is back (its new birth may still be on its way).
    if (st && st.status === "NODE_OFFLINE" && (!hb || e.state!.at >= hb.at)) {
      health = "offline";
      reason = st.reason || "offline";
    } else if (hb && hbAge! <= reporting) {
      health = "online";
    } else if (hb) {
      health = "lost";
      reason = `no heartbeat for ${Math.round(hbAge! / 1000)} s (reporting time ${Math.round(reporting / 1000)} s)`;
    } else if (rh && !rh.online) {
      health = "lost";
      reason = "the relay lost its heartbeats";
    } else {
      // Online by its birth or the relay, no heartbeat seen by this page yet.
      health = st || rh ? "waiting" : "lost";
    }
    return {
      site: e.site,
      node: e.node,
      health,
      reason,
      lastHeartbeatAgeMs: hbAge,
      outboxPending: hb ? hb.msg.outbox_pending : rh ? rh.outbox_pending : null,
      path: hb?.msg.path || st?.path || rh?.path || "",
      version: st?.version || "",
      uncovered: st?.uncovered_zones ?? [],
    };
  }

  siteView(site: string, now: number, queue?: IncidentView[]): SiteView {
    const status = this.statuses.get(site);
    const s = status?.msg;
    const incidents = (queue ?? this.queue()).filter((i) => i.site === site);
    const nodes: NodeView[] = [];
    const seen = new Set<string>();
    for (const e of this.nodes.values()) {
      if (e.site !== site) continue;
      nodes.push(this.nodeView(e, now, s));
      seen.add(e.node);
    }
    // Nodes only the relay told us about.
    for (const nh of s?.nodes ?? []) {
      if (seen.has(nh.node)) continue;
      nodes.push({
        site,
        node: nh.node,
        health: nh.online ? "waiting" : "lost",
        reason: nh.online ? "" : "the relay lost its heartbeats",
        lastHeartbeatAgeMs: null,
        outboxPending: nh.outbox_pending,
        path: nh.path,
        version: "",
        uncovered: [],
      });
    }
    nodes.sort((a, b) => a.node.localeCompare(b.node));

    const uncovered = new Set<string>(s?.uncovered_zones ?? []);
    for (const n of nodes) for (const z of n.uncovered) uncovered.add(z);

    const b = this.bridges.get(`vigie-bridge-${site}`);
    const bridge: SiteView["bridge"] = b ? (b.up ? "up" : "down") : s ? (s.bridge_up ? "up" : "down") : "unknown";

    let state: SiteState;
    let stateFrom: SiteView["stateFrom"] = "relay";
    const relayState = s && typeof s.state === "string" ? SITE_STATE[s.state] : undefined;
    if (relayState) {
      state = relayState;
    } else {
      stateFrom = nodes.length || incidents.length || b ? "mesh" : "none";
      if (incidents.some((i) => !i.trouble)) state = "alarm";
      else if (incidents.length) state = "trouble";
      else if (nodes.length && nodes.every((n) => n.health === "offline" || n.health === "lost")) state = "offline";
      else if (bridge === "down") state = "offline";
      else if (nodes.some((n) => n.health === "offline" || n.health === "lost")) state = "trouble";
      else if (nodes.length) state = "normal";
      else state = "unknown";
    }
    // An incident the page has seen and the relay's last status has not yet
    // counted still shows: the more severe of the two wins.
    if (stateFrom === "relay") {
      const fromInc: SiteState = incidents.some((i) => !i.trouble) ? "alarm" : incidents.length ? "trouble" : "normal";
      if (SITE_STATE_RANK[fromInc] > SITE_STATE_RANK[state] && state !== "offline") state = fromInc;
    }

    let posture = s ? postureOf(s.posture) : "unknown";
    for (const p of this.patterns.values())
      if (p.msg.active && p.msg.sites.includes(site)) posture = maxPosture(posture, postureOf(p.msg.posture));
    if (posture === "unknown" && (nodes.length || incidents.length)) posture = "normal";

    let location = s?.location ?? null;
    const zones: Zone[] = [];
    for (const e of this.nodes.values())
      if (e.site === site && e.state) for (const z of e.state.msg.zones) zones.push(z);
    if (!location) {
      const d = [...this.dispatches.values()].find((d) => d.msg.site === site && d.msg.site_location);
      location = d?.msg.site_location ?? null;
    }
    if (!location) {
      const zl = zones.filter((z) => z.location);
      if (zl.length)
        location = {
          lat: zl.reduce((a, z) => a + z.location!.lat, 0) / zl.length,
          lon: zl.reduce((a, z) => a + z.location!.lon, 0) / zl.length,
        };
    }
    if (location && location.lat === 0 && location.lon === 0) location = null;

    return {
      id: site,
      name: this.siteName(site),
      state,
      stateFrom,
      posture,
      location,
      region: s?.region || incidents.map((i) => this.incidents.get(i.id)?.msg.region).find((r) => r) || "",
      incidents,
      uncovered: [...uncovered].sort(),
      bridge,
      nodes,
      statusAgeMs: status ? now - status.at : null,
      zones,
    };
  }

  sites(now: number): SiteView[] {
    const q = this.queue();
    return this.siteIds()
      .map((id) => this.siteView(id, now, q))
      .sort((a, b) => SITE_STATE_RANK[b.state] - SITE_STATE_RANK[a.state] || a.name.localeCompare(b.name));
  }

  postViews(now: number): PostView[] {
    const ids = new Set<string>(this.posts.keys());
    for (const p of this.postLastDispatch.keys()) ids.add(p);
    return [...ids].sort().map((post) => {
      const st = this.posts.get(post)?.msg;
      const health: PostHealth = !st
        ? "unknown"
        : st.status === "POST_ONLINE"
          ? "online"
          : st.status === "POST_OFFLINE"
            ? "offline"
            : "unknown";
      const last = this.postLastDispatch.get(post);
      return {
        post,
        name: st?.name || "",
        health,
        reason: health === "offline" ? st?.reason || "" : "",
        lastDispatchAgeMs: last === undefined ? null : now - last,
      };
    });
  }

  bridgeViews(now: number): BridgeView[] {
    return [...this.bridges.entries()]
      .map(([connection, b]) => ({ connection, site: bridgeSite(connection), up: b.up, ageMs: now - b.at }))
      .sort((a, b) => Number(a.up) - Number(b.up) || a.connection.localeCompare(b.connection));
  }

  patternViews(): PatternAlertMsg[] {
    return [...this.patterns.values()]
      .map((p) => p.msg)
      .sort(
        (a, b) =>
          Number(b.active) - Number(a.active) ||
          priorityRank(b.priority) - priorityRank(a.priority) ||
          b.updated_us - a.updated_us,
      );
  }
}
