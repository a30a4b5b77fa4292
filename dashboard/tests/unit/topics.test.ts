import { describe, expect, it } from "vitest";
import { ackTopic, bridgeSite, parseTopic, validId } from "../../src/topics";

describe("topics", () => {
  it("parses the topic tree", () => {
    expect(parseTopic("vigie/v1/site/louvre/node/apollo-1/state")).toEqual({ kind: "nodeState", site: "louvre", node: "apollo-1" });
    expect(parseTopic("vigie/v1/site/louvre/node/apollo-1/heartbeat")).toEqual({ kind: "heartbeat", site: "louvre", node: "apollo-1" });
    expect(parseTopic("vigie/v1/site/louvre/node/apollo-1/event")).toEqual({ kind: "other" });
    expect(parseTopic("vigie/v1/relay/louvre/alert")).toEqual({ kind: "siteAlert", site: "louvre" });
    expect(parseTopic("vigie/v1/relay/louvre/receipt/n1")).toEqual({ kind: "other" });
    expect(parseTopic("vigie/v1/status/louvre")).toEqual({ kind: "status", site: "louvre" });
    expect(parseTopic("vigie/v1/incident/i-1")).toEqual({ kind: "incident", id: "i-1" });
    expect(parseTopic("vigie/v1/post/p1/dispatch")).toEqual({ kind: "dispatch", post: "p1" });
    expect(parseTopic("vigie/v1/post/p1/ack")).toEqual({ kind: "ack", post: "p1" });
    expect(parseTopic("vigie/v1/post/p1/state")).toEqual({ kind: "postState", post: "p1" });
    expect(parseTopic("vigie/v1/pattern/x")).toEqual({ kind: "pattern", id: "x" });
    expect(parseTopic("$SYS/broker/connection/vigie-bridge-louvre/state")).toEqual({ kind: "bridge", connection: "vigie-bridge-louvre" });
    expect(parseTopic("vigie/v2/status/louvre")).toEqual({ kind: "other" });
    expect(parseTopic("vigie/v1/status/louvre/extra")).toEqual({ kind: "other" });
  });

  it("builds ack topics and checks ids", () => {
    expect(ackTopic("pp-paris-1")).toBe("vigie/v1/post/pp-paris-1/ack");
    expect(validId("pp-paris-1")).toBe(true);
    expect(validId("PP")).toBe(false);
    expect(validId("a/b")).toBe(false);
    expect(validId("a+")).toBe(false);
    expect(validId("")).toBe(false);
    expect(bridgeSite("vigie-bridge-louvre")).toBe("louvre");
    expect(bridgeSite("other")).toBeNull();
  });
});
