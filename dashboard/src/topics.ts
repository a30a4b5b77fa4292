// The topic tree, version 1 (README "Topic tree"): what the dashboard reads.

// Subscriptions. Not the raw events and receipts (the relay's incidents say
// what they mean; at a burst they are thousands a second).
export const SUBSCRIPTIONS = [
  "vigie/v1/site/+/node/+/state",
  "vigie/v1/site/+/node/+/heartbeat",
  "vigie/v1/relay/+/alert",
  "vigie/v1/status/+",
  "vigie/v1/incident/+",
  "vigie/v1/post/+/dispatch",
  "vigie/v1/post/+/ack",
  "vigie/v1/post/+/state",
  "vigie/v1/pattern/+",
  // Bridge notifications (broker-config/README.md): "1" up, "0" down.
  "$SYS/broker/connection/+/state",
];

export type Topic =
  | { kind: "nodeState"; site: string; node: string }
  | { kind: "heartbeat"; site: string; node: string }
  | { kind: "siteAlert"; site: string }
  | { kind: "status"; site: string }
  | { kind: "incident"; id: string }
  | { kind: "dispatch"; post: string }
  | { kind: "ack"; post: string }
  | { kind: "postState"; post: string }
  | { kind: "pattern"; id: string }
  | { kind: "bridge"; connection: string }
  | { kind: "other" };

export function parseTopic(topic: string): Topic {
  const p = topic.split("/");
  if (p[0] === "$SYS") {
    if (p.length === 5 && p[1] === "broker" && p[2] === "connection" && p[4] === "state")
      return { kind: "bridge", connection: p[3] };
    return { kind: "other" };
  }
  if (p[0] !== "vigie" || p[1] !== "v1") return { kind: "other" };
  const [, , a, b, c, d, e] = p;
  if (a === "site" && p.length === 7 && c === "node") {
    if (e === "state") return { kind: "nodeState", site: b, node: d };
    if (e === "heartbeat") return { kind: "heartbeat", site: b, node: d };
  }
  if (a === "relay" && p.length === 5 && c === "alert") return { kind: "siteAlert", site: b };
  if (a === "status" && p.length === 4) return { kind: "status", site: b };
  if (a === "incident" && p.length === 4) return { kind: "incident", id: b };
  if (a === "pattern" && p.length === 4) return { kind: "pattern", id: b };
  if (a === "post" && p.length === 5) {
    if (c === "dispatch") return { kind: "dispatch", post: b };
    if (c === "ack") return { kind: "ack", post: b };
    if (c === "state") return { kind: "postState", post: b };
  }
  return { kind: "other" };
}

export function ackTopic(post: string): string {
  return `vigie/v1/post/${post}/ack`;
}

// Topic words are ids made of [a-z0-9-_] (DESIGN.md).
export function validId(s: string): boolean {
  return /^[a-z0-9_-]{1,64}$/.test(s);
}

// "vigie-bridge-louvre" -> "louvre"
export function bridgeSite(connection: string): string | null {
  const m = /^vigie-bridge-(.+)$/.exec(connection);
  return m ? m[1] : null;
}
