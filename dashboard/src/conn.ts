// The MQTT-over-websockets connection: connects, subscribes (again at every
// reconnect: clean session, so the broker sends the retained picture anew),
// reconnects by itself every second, and says what it is doing.
import mqtt from "mqtt";
import type { MqttClient } from "mqtt";
import type { Config } from "./config";
import { SUBSCRIPTIONS } from "./topics";

export type ConnState =
  | { s: "connecting"; since: number; attempt: number }
  | { s: "connected"; since: number; reconnected: boolean }
  | { s: "disconnected"; since: number; attempt: number; reason: string }
  | { s: "refused"; since: number; reason: string };

export interface ConnHandlers {
  message(topic: string, payload: Uint8Array): void;
  state(st: ConnState): void;
  subscribed?(): void; // the broker granted the subscriptions of this connection
}

const CONNACK_REASON: Record<number, string> = {
  1: "protocol version refused",
  2: "client id refused",
  3: "broker unavailable",
  4: "user name or password refused (bad user name or password)",
  5: "user name or password refused (not authorised)",
  134: "user name or password refused (bad user name or password)",
  135: "user name or password refused (not authorised)",
};

export class Connection {
  private client: MqttClient | null = null;
  private attempt = 0;
  private everConnected = false;
  private downSince = 0;
  private lastError = "";
  private refused = false;

  constructor(
    private cfg: Config,
    private h: ConnHandlers,
  ) {}

  start(): void {
    const id = `vigie-dash-${Math.random().toString(36).slice(2, 10)}`;
    this.attempt = 1;
    this.downSince = Date.now();
    this.h.state({ s: "connecting", since: this.downSince, attempt: 1 });
    const c = mqtt.connect(this.cfg.brokerUrl, {
      clientId: id,
      username: this.cfg.username,
      password: this.cfg.password,
      clean: true,
      keepalive: 10, // a hung broker is noticed within 15 s
      reconnectPeriod: 1000,
      connectTimeout: 4000,
      resubscribe: false, // we subscribe at every connect ourselves
      protocolVersion: 4,
      manualConnect: false,
    });
    this.client = c;

    c.on("connect", () => {
      const reconnected = this.everConnected;
      this.everConnected = true;
      this.attempt = 0;
      this.lastError = "";
      this.h.state({ s: "connected", since: Date.now(), reconnected });
      c.subscribe(
        SUBSCRIPTIONS.map((t) => t),
        { qos: 1 },
        (err) => {
          if (err) this.lastError = `subscribe failed: ${err.message}`;
          else this.h.subscribed?.();
        },
      );
    });
    c.on("message", (topic, payload) => this.h.message(topic, payload));
    c.on("error", (err: Error & { code?: number }) => {
      const why = typeof err.code === "number" ? CONNACK_REASON[err.code] : undefined;
      if (why && (err.code === 4 || err.code === 5 || err.code === 134 || err.code === 135)) {
        // Retrying with the same credentials cannot help: ask for others.
        this.refused = true;
        c.end(true);
        this.h.state({ s: "refused", since: Date.now(), reason: why });
        return;
      }
      this.lastError = why ?? err.message;
    });
    c.on("close", () => {
      if (this.client !== c || this.refused) return;
      if (!this.downSince || this.attempt === 0) this.downSince = Date.now();
      this.h.state({
        s: "disconnected",
        since: this.downSince,
        attempt: this.attempt,
        reason: this.lastError || (this.everConnected ? "connection to the broker lost" : "broker not reachable"),
      });
    });
    c.on("reconnect", () => {
      if (this.refused) return;
      this.attempt++;
      this.h.state({
        s: "disconnected",
        since: this.downSince,
        attempt: this.attempt,
        reason: this.lastError || (this.everConnected ? "connection to the broker lost" : "broker not reachable"),
      });
    });
  }

  connected(): boolean {
    return !!this.client?.connected;
  }

  // QoS 1; resolves at the broker's PUBACK.
  publish(topic: string, payload: Uint8Array, timeoutMs = 5000): Promise<void> {
    const c = this.client;
    if (!c || !c.connected) return Promise.reject(new Error("not connected to the broker"));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no answer from the broker")), timeoutMs);
      c.publish(topic, payload as unknown as Buffer, { qos: 1, retain: false }, (err) => {
        clearTimeout(timer);
        if (err) reject(err);
        else resolve();
      });
    });
  }

  stop(): void {
    const c = this.client;
    this.client = null;
    c?.end(true);
  }
}
