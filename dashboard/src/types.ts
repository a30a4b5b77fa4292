// The fields of proto/vigie.proto the dashboard reads, as decoded by
// proto.ts (snake_case names, enums as their names, 64-bit as numbers).
// tests/unit/proto.test.ts checks every field named here exists in the proto.

export type Enum = string | number; // a name, or the number of a value this build does not know

export interface Location {
  lat: number;
  lon: number;
}

export interface Attribute {
  key: string;
  value: string;
}

export interface Zone {
  id: string;
  name: string;
  floor: string;
  facade: string;
  location: Location | null;
  cameras: string[];
  action_plan: string;
  kind: string;
}

export interface NodeStateMsg {
  site: string;
  node: string;
  boot_id: number;
  status: Enum;
  time_us: number;
  version: string;
  heartbeat_period_ms: number;
  reporting_time_ms: number;
  zones: Zone[];
  uncovered_zones: string[];
  path: string;
  reason: string;
}

export interface HeartbeatBodyMsg {
  site: string;
  node: string;
  boot_id: number;
  time_us: number;
  last_seq: number;
  outbox_pending: number;
  period_ms: number;
  reporting_time_ms: number;
  path: string;
  hb_seq: number;
}

export interface NodeHealthMsg {
  node: string;
  online: boolean;
  last_heartbeat_us: number;
  outbox_pending: number;
  path: string;
}

export interface SiteStatusMsg {
  site: string;
  name: string;
  time_us: number;
  state: Enum;
  posture: Enum;
  location: Location | null;
  region: string;
  open_incidents: string[];
  uncovered_zones: string[];
  nodes: NodeHealthMsg[];
  bridge_up: boolean;
}

export interface IncidentMsg {
  id: string;
  site: string;
  zone: string;
  state: Enum;
  priority: Enum;
  kind: Enum;
  confirmed: boolean;
  trouble: boolean;
  first_event_us: number;
  last_event_us: number;
  level: number;
  level_name: string;
  acked_by: string;
  acked_us: number;
  attributes: Attribute[];
  updated_us: number;
  region: string;
  event_count: number;
  detectors: string[];
  confirmed_us: number;
  closed_us: number;
  subject: string;
}

export interface DispatchMsg {
  id: string;
  incident: string;
  post: string;
  site: string;
  site_name: string;
  zone: Zone | null;
  kind: Enum;
  priority: Enum;
  confirmed: boolean;
  first_event_us: number;
  sent_us: number;
  level: number;
  level_name: string;
  attempt: number;
  action_plan: string;
  text: string;
  pattern: string;
  site_location: Location | null;
  address: string;
  backup_for: string;
}

export interface AckMsg {
  dispatch: string;
  incident: string;
  post: string;
  by: string;
  time_us: number;
  note: string;
  source: string;
}

export interface PostStateMsg {
  post: string;
  status: Enum;
  time_us: number;
  name: string;
  version: string;
  reason: string;
}

export interface PatternAlertMsg {
  id: string;
  rule: string;
  title: string;
  explanation: string;
  sites: string[];
  incidents: string[];
  first_us: number;
  last_us: number;
  updated_us: number;
  priority: Enum;
  posture: Enum;
  instructions: string[];
  posts: string[];
  active: boolean;
  region: string;
}

export interface SiteAlertMsg {
  site: string;
  id: string;
  time_us: number;
  incident: string;
  posture: Enum;
  title: string;
  text: string;
  instructions: string[];
  pattern: string;
  priority: Enum;
  level: number;
}

// The fields above, per message, for the proto conformance test.
export const FIELDS_USED: Record<string, string[]> = {
  Location: ["lat", "lon"],
  Attribute: ["key", "value"],
  Zone: ["id", "name", "floor", "facade", "location", "cameras", "action_plan", "kind"],
  NodeState: ["site", "node", "boot_id", "status", "time_us", "version", "heartbeat_period_ms",
    "reporting_time_ms", "zones", "uncovered_zones", "path", "reason"],
  HeartbeatBody: ["site", "node", "boot_id", "time_us", "last_seq", "outbox_pending",
    "period_ms", "reporting_time_ms", "path", "hb_seq"],
  Heartbeat: ["body"],
  NodeHealth: ["node", "online", "last_heartbeat_us", "outbox_pending", "path"],
  SiteStatus: ["site", "name", "time_us", "state", "posture", "location", "region",
    "open_incidents", "uncovered_zones", "nodes", "bridge_up"],
  Incident: ["id", "site", "zone", "state", "priority", "kind", "confirmed", "trouble",
    "first_event_us", "last_event_us", "level", "level_name", "acked_by", "acked_us",
    "attributes", "updated_us", "region", "event_count", "detectors", "confirmed_us",
    "closed_us", "subject"],
  Dispatch: ["id", "incident", "post", "site", "site_name", "zone", "kind", "priority",
    "confirmed", "first_event_us", "sent_us", "level", "level_name", "attempt", "action_plan",
    "text", "pattern", "site_location", "address", "backup_for"],
  Ack: ["dispatch", "incident", "post", "by", "time_us", "note", "source"],
  PostState: ["post", "status", "time_us", "name", "version", "reason"],
  PatternAlert: ["id", "rule", "title", "explanation", "sites", "incidents", "first_us",
    "last_us", "updated_us", "priority", "posture", "instructions", "posts", "active", "region"],
  SiteAlert: ["site", "id", "time_us", "incident", "posture", "title", "text", "instructions",
    "pattern", "priority", "level"],
};
