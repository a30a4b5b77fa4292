import { describe, expect, it } from "vitest";
import { Model } from "../../src/model";
import { placeLabels, project, type Box } from "../../src/map";
import { NOW, enc, heartbeat, us } from "./helpers";

function incident(id: string, o: Record<string, unknown> = {}) {
  return enc("Incident", {
    id,
    site: "louvre",
    zone: "apollo-gallery",
    state: "INCIDENT_OPEN",
    priority: "PRIORITY_HIGH",
    kind: "KIND_GLASS_BREAK",
    first_event_us: us(NOW - 30_000),
    level: 0,
    level_name: "site-security",
    ...o,
  });
}

describe("incident queue", () => {
  it("sorts by priority, then unacknowledged first, then oldest first; hides closed", () => {
    const m = new Model();
    m.apply("vigie/v1/incident/a", incident("a", { priority: "PRIORITY_MEDIUM" }), NOW);
    m.apply("vigie/v1/incident/b", incident("b", { priority: "PRIORITY_CRITICAL", first_event_us: us(NOW - 5000) }), NOW);
    m.apply("vigie/v1/incident/c", incident("c", { priority: "PRIORITY_CRITICAL", first_event_us: us(NOW - 9000) }), NOW);
    m.apply(
      "vigie/v1/incident/d",
      incident("d", { priority: "PRIORITY_CRITICAL", first_event_us: us(NOW - 99000), state: "INCIDENT_ACKNOWLEDGED", acked_by: "X" }),
      NOW,
    );
    m.apply("vigie/v1/incident/e", incident("e", { priority: "PRIORITY_CRITICAL", state: "INCIDENT_CLOSED" }), NOW);
    expect(m.queue().map((i) => i.id)).toEqual(["c", "b", "d", "a"]);
    expect(m.recentlyClosed().map((i) => i.id)).toEqual(["e"]);
  });

  it("an empty retained payload removes the incident", () => {
    const m = new Model();
    m.apply("vigie/v1/incident/a", incident("a"), NOW);
    m.apply("vigie/v1/incident/a", new Uint8Array(), NOW);
    expect(m.queue()).toEqual([]);
  });

  it("an undecodable payload is recorded and changes nothing", () => {
    const m = new Model();
    m.apply("vigie/v1/incident/a", incident("a"), NOW);
    expect(m.apply("vigie/v1/incident/a", new Uint8Array([0xff, 0xff, 0xff]), NOW)).toBe(false);
    expect(m.queue().map((i) => i.id)).toEqual(["a"]);
    expect(m.badCount).toBe(1);
    expect(m.bad[0].topic).toBe("vigie/v1/incident/a");
  });
});

describe("acks", () => {
  it("go to the post of the latest dispatch seen, with its id", () => {
    const m = new Model("hq");
    m.apply("vigie/v1/incident/i1", incident("i1", { level: 2 }), NOW);
    m.apply("vigie/v1/post/hq-louvre/dispatch", enc("Dispatch", { id: "i1-l1", incident: "i1", post: "hq-louvre", level: 1, sent_us: us(NOW - 2000) }), NOW);
    m.apply("vigie/v1/post/pp-paris-1/dispatch", enc("Dispatch", { id: "i1-l2", incident: "i1", post: "pp-paris-1", level: 2, sent_us: us(NOW - 1000) }), NOW);
    // A late re-send of the older one does not win.
    m.apply("vigie/v1/post/hq-louvre/dispatch", enc("Dispatch", { id: "i1-l1", incident: "i1", post: "hq-louvre", level: 1, sent_us: us(NOW - 1500), attempt: 2 }), NOW);
    const { topicPost, ack } = m.buildAck(m.incidents.get("i1")!.msg, "Brigadier Dupont", NOW);
    expect(topicPost).toBe("pp-paris-1");
    expect(ack).toEqual({
      dispatch: "i1-l2",
      incident: "i1",
      post: "pp-paris-1",
      by: "Brigadier Dupont",
      time_us: us(NOW),
      note: "",
      source: "dashboard",
    });
  });

  it("go to the configured post when no dispatch was seen, id <incident>-l<level>", () => {
    const m = new Model("pp-default");
    m.apply("vigie/v1/incident/i2", incident("i2", { level: 1 }), NOW);
    const { topicPost, ack } = m.buildAck(m.incidents.get("i2")!.msg, "Op", NOW);
    expect(topicPost).toBe("pp-default");
    expect(ack.dispatch).toBe("i2-l1");
    expect(ack.post).toBe("pp-default");
  });
});

describe("sites", () => {
  it("takes the relay's state and posture, raised by an active pattern", () => {
    const m = new Model();
    m.apply(
      "vigie/v1/status/louvre",
      enc("SiteStatus", {
        site: "louvre",
        name: "Musée du Louvre",
        state: "SITE_NORMAL",
        posture: "POSTURE_NORMAL",
        location: { lat: 48.8606, lon: 2.3376 },
        uncovered_zones: ["quai-facade"],
        bridge_up: true,
      }),
      NOW,
    );
    m.apply(
      "vigie/v1/pattern/p1",
      enc("PatternAlert", { id: "p1", active: true, sites: ["louvre", "orsay"], posture: "POSTURE_HEIGHTENED", explanation: "3 museums in 2 h" }),
      NOW,
    );
    const s = m.siteView("louvre", NOW);
    expect(s.state).toBe("normal");
    expect(s.stateFrom).toBe("relay");
    expect(s.posture).toBe("heightened");
    expect(s.uncovered).toEqual(["quai-facade"]);
    expect(s.bridge).toBe("up");
    expect(s.name).toBe("Musée du Louvre");
  });

  it("shows an incident the relay's last status has not counted yet", () => {
    const m = new Model();
    m.apply("vigie/v1/status/louvre", enc("SiteStatus", { site: "louvre", state: "SITE_NORMAL" }), NOW);
    m.apply("vigie/v1/incident/i1", incident("i1"), NOW);
    expect(m.siteView("louvre", NOW).state).toBe("alarm");
  });

  it("without a relay status, judges from births, heartbeats, bridges and incidents", () => {
    const m = new Model();
    m.apply(
      "vigie/v1/site/mnhn/node/n1/state",
      enc("NodeState", { site: "mnhn", node: "n1", status: "NODE_ONLINE", reporting_time_ms: 10000, uncovered_zones: ["roof"] }),
      NOW,
    );
    m.apply("vigie/v1/site/mnhn/node/n1/heartbeat", heartbeat({ site: "mnhn", node: "n1", reporting_time_ms: 10000, outbox_pending: 3 }), NOW);
    let s = m.siteView("mnhn", NOW + 1000);
    expect(s.state).toBe("normal");
    expect(s.stateFrom).toBe("mesh");
    expect(s.uncovered).toEqual(["roof"]);
    expect(s.nodes[0].health).toBe("online");
    expect(s.nodes[0].outboxPending).toBe(3);
    // Silence longer than the reporting time: lost.
    s = m.siteView("mnhn", NOW + 11_000);
    expect(s.nodes[0].health).toBe("lost");
    expect(s.state).toBe("offline");
    // The LWT.
    m.apply("vigie/v1/site/mnhn/node/n1/state", enc("NodeState", { site: "mnhn", node: "n1", status: "NODE_OFFLINE", reason: "lwt" }), NOW + 12_000);
    s = m.siteView("mnhn", NOW + 12_000);
    expect(s.nodes[0].health).toBe("offline");
    expect(s.nodes[0].reason).toBe("lwt");
    // A bridge notification.
    m.apply("$SYS/broker/connection/vigie-bridge-orsay/state", new TextEncoder().encode("0"), NOW);
    expect(m.siteIds()).toContain("orsay");
    expect(m.siteView("orsay", NOW).bridge).toBe("down");
    expect(m.siteView("orsay", NOW).state).toBe("offline");
  });

  it("sorts the most severe site first", () => {
    const m = new Model();
    m.apply("vigie/v1/status/a", enc("SiteStatus", { site: "a", state: "SITE_NORMAL" }), NOW);
    m.apply("vigie/v1/status/b", enc("SiteStatus", { site: "b", state: "SITE_OFFLINE" }), NOW);
    m.apply("vigie/v1/status/c", enc("SiteStatus", { site: "c", state: "SITE_ALARM" }), NOW);
    m.apply("vigie/v1/status/d", enc("SiteStatus", { site: "d", state: "SITE_TROUBLE" }), NOW);
    expect(m.sites(NOW).map((s) => s.state)).toEqual(["alarm", "trouble", "offline", "normal"]);
  });
});

describe("posts and bridges", () => {
  it("reads PostState and bridge notifications; rejects a bad bridge payload", () => {
    const m = new Model();
    m.apply("vigie/v1/post/p1/state", enc("PostState", { post: "p1", status: "POST_OFFLINE", reason: "lwt", name: "PP 1" }), NOW);
    m.apply("vigie/v1/post/p2/state", enc("PostState", { post: "p2", status: "POST_ONLINE" }), NOW);
    expect(m.postViews(NOW).map((p) => [p.post, p.health, p.reason])).toEqual([
      ["p1", "offline", "lwt"],
      ["p2", "online", ""],
    ]);
    m.apply("$SYS/broker/connection/vigie-bridge-louvre/state", new TextEncoder().encode("1"), NOW);
    expect(m.apply("$SYS/broker/connection/vigie-bridge-louvre/state", new TextEncoder().encode("maybe"), NOW)).toBe(false);
    expect(m.bridgeViews(NOW)[0]).toMatchObject({ site: "louvre", up: true });
  });
});

describe("map projection", () => {
  it("puts east to the right and north up, inside the frame", () => {
    const pts = [
      { lat: 48.8606, lon: 2.3376 }, // Louvre
      { lat: 48.86, lon: 2.3266 }, // Orsay
      { lat: 48.8418, lon: 2.3561 }, // MNHN
    ];
    const p = project(pts, 600, 340, 40);
    const xs = pts.map((q) => p.x(q.lon));
    const ys = pts.map((q) => p.y(q.lat));
    expect(xs[2]).toBeGreaterThan(xs[0]);
    expect(xs[0]).toBeGreaterThan(xs[1]);
    expect(ys[2]).toBeGreaterThan(ys[0]); // MNHN is south: lower on screen
    for (const x of xs) expect(x).toBeGreaterThanOrEqual(39.9), expect(x).toBeLessThanOrEqual(560.1);
    for (const y of ys) expect(y).toBeGreaterThanOrEqual(39.9), expect(y).toBeLessThanOrEqual(300.1);
  });

  it("centres one site alone", () => {
    const p = project([{ lat: 48.86, lon: 2.33 }], 600, 340, 40);
    expect(p.x(2.33)).toBeCloseTo(300);
    expect(p.y(48.86)).toBeCloseTo(170);
  });
});

describe("map labels", () => {
  const overlap = (a: Box, b: Box) => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
  for (const W of [300, 350, 390, 600]) {
    it(`three Paris museums at ${W} px: labels inside, over no marker and no other label`, () => {
      const H = Math.round(Math.min(Math.max(W * 0.72, 230), 440));
      const pts0 = [
        { lat: 48.8606, lon: 2.3376 },
        { lat: 48.86, lon: 2.3266 },
        { lat: 48.8418, lon: 2.3561 },
      ];
      const p = project(pts0, W, H, Math.min(70, Math.max(36, W * 0.1)));
      const pts = pts0.map((q) => ({ x: p.x(q.lon), y: p.y(q.lat) }));
      const sizes = [
        { w: 190, h: 30 },
        { w: 190, h: 30 },
        { w: 30 * 13 * 0.66 + 6, h: 30 },
      ];
      const boxes = placeLabels(pts, sizes, [0, 1, 2], W, H);
      const markers = pts.map(({ x, y }) => ({ x: x - 13, y: y - 13, w: 26, h: 26 }));
      boxes.forEach((b, i) => {
        expect(b.x).toBeGreaterThanOrEqual(2);
        expect(b.y).toBeGreaterThanOrEqual(2);
        expect(b.x + b.w).toBeLessThanOrEqual(W - 2);
        expect(b.y + b.h).toBeLessThanOrEqual(H - 2);
        for (const m of markers) expect(overlap(b, m), `label ${i} over a marker`).toBe(false);
        boxes.forEach((o, j) => j !== i && expect(overlap(b, o), `labels ${i} and ${j}`).toBe(false));
      });
    });
  }
});

describe("after a reconnection", () => {
  it("drops the retained state that did not come back", () => {
    const m = new Model();
    m.newEpoch();
    m.apply("vigie/v1/incident/a", incident("a"), NOW);
    m.apply("vigie/v1/incident/b", incident("b"), NOW);
    m.apply("$SYS/broker/connection/vigie-bridge-louvre/state", new TextEncoder().encode("1"), NOW);
    m.apply("vigie/v1/post/pp/dispatch", enc("Dispatch", { id: "a-l1", incident: "a", post: "pp" }), NOW);
    m.newEpoch(); // reconnected: only "a" is still retained
    m.apply("vigie/v1/incident/a", incident("a"), NOW + 5000);
    expect(m.sweep()).toBe(2);
    expect(m.queue().map((i) => i.id)).toEqual(["a"]);
    expect(m.bridges.size).toBe(0);
    expect(m.dispatches.get("a")).toBeDefined(); // not retained: kept
    expect(m.incidents.get("a")!.firstSeen).toBe(NOW);
  });
});
