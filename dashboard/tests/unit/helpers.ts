import { encode, type MessageName } from "../../src/proto";

export function enc(name: MessageName, obj: Record<string, unknown>): Uint8Array {
  return encode(name, obj);
}

export function heartbeat(body: Record<string, unknown>): Uint8Array {
  return enc("Heartbeat", { body: enc("HeartbeatBody", body) });
}

export const NOW = 1_790_000_000_000; // ms
export const us = (ms: number) => ms * 1000;
