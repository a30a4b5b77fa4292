import { describe, expect, it } from "vitest";
import { decode, encodeAck, schema } from "../../src/proto";
import { FIELDS_USED } from "../../src/types";
import type { AckMsg, IncidentMsg } from "../../src/types";
import { enc } from "./helpers";

describe("the proto descriptor built from ../proto/vigie.proto", () => {
  it("has every field the dashboard reads", () => {
    for (const [msg, fields] of Object.entries(FIELDS_USED)) {
      const names = schema(msg).fields.map((f) => f.name);
      for (const f of fields) expect(names, `${msg}.${f}`).toContain(f);
    }
  });

  it("decodes 64-bit times as numbers, enums by name, absent fields as zero", () => {
    const bytes = enc("Incident", {
      id: "louvre-20261122-214210",
      site: "louvre",
      priority: "PRIORITY_CRITICAL",
      first_event_us: 1_790_000_000_123_456,
      level: 2,
    });
    const inc = decode<IncidentMsg>("Incident", bytes);
    expect(inc.first_event_us).toBe(1_790_000_000_123_456);
    expect(inc.priority).toBe("PRIORITY_CRITICAL");
    expect(inc.state).toBe("INCIDENT_UNSPECIFIED");
    expect(inc.acked_by).toBe("");
    expect(inc.detectors).toEqual([]);
  });

  it("decodes sub-messages and lists; an absent sub-message is null", () => {
    const st = decode<{ location: unknown; nodes: { node: string; last_heartbeat_us: number }[]; bridge_up: boolean }>(
      "SiteStatus",
      enc("SiteStatus", { site: "louvre", nodes: [{ node: "n1", online: true, last_heartbeat_us: 1_790_000_000_000_001 }], bridge_up: true }),
    );
    expect(st.location).toBeNull();
    expect(st.nodes[0].node).toBe("n1");
    expect(st.nodes[0].last_heartbeat_us).toBe(1_790_000_000_000_001);
    expect(st.bridge_up).toBe(true);
  });

  it("keeps an enum value it does not know as a number", () => {
    // priority = 9 (field 5, varint): a newer relay's value
    const inc = decode<IncidentMsg>("Incident", new Uint8Array([0x28, 9]));
    expect(inc.priority).toBe(9);
  });

  it("encodes an Ack that decodes back field by field", () => {
    const ack: AckMsg = {
      dispatch: "inc-1-l2",
      incident: "inc-1",
      post: "pp-paris-1",
      by: "Brigadier Dupont",
      time_us: 1_790_000_000_123_456,
      note: "",
      source: "dashboard",
    };
    expect(decode<AckMsg>("Ack", encodeAck(ack))).toEqual(ack);
  });
});
