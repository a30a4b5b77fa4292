// The wire contract, decoded. The descriptor is ../proto/vigie.proto,
// compiled at build time by the plugin in vite.config.ts; decoding is
// @bufbuild/protobuf's reflection (no generated code, no eval).
import {
  ScalarType,
  create,
  createFileRegistry,
  fromBinary,
  toBinary,
  type DescField,
  type DescMessage,
  type Message,
} from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import descriptorSetBase64 from "virtual:vigie-proto";
import type { AckMsg } from "./types";

function b64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, b64(descriptorSetBase64)));

export type MessageName =
  | "NodeState"
  | "Heartbeat"
  | "HeartbeatBody"
  | "SiteStatus"
  | "Incident"
  | "Dispatch"
  | "Ack"
  | "PostState"
  | "PatternAlert"
  | "SiteAlert"
  | "Zone"
  | "Location";

export function schema(name: string): DescMessage {
  const d = registry.getMessage(`vigie.v1.${name}`);
  if (!d) throw new Error(`vigie.v1.${name} is not in proto/vigie.proto`);
  return d;
}

const LONG = new Set<ScalarType>([
  ScalarType.INT64,
  ScalarType.UINT64,
  ScalarType.SINT64,
  ScalarType.FIXED64,
  ScalarType.SFIXED64,
]);

function scalarOut(t: ScalarType, v: unknown): unknown {
  // Microsecond times stay below 2^53 until the year 2255.
  return LONG.has(t) ? Number(v as bigint) : v;
}

function enumOut(f: DescField, v: number): string | number {
  const e = f.fieldKind === "enum" || (f.fieldKind === "list" && f.listKind === "enum") ? f.enum : undefined;
  // A value this build does not know stays a number: "unspecified but present".
  return e?.values.find((x) => x.number === v)?.name ?? v;
}

// A decoded message as a plain object with the .proto's field names
// (snake_case), enums by name, 64-bit integers as numbers, absent fields as
// their zero values and absent sub-messages as null.
export function toPlain(desc: DescMessage, msg: Message): Record<string, unknown> {
  const m = msg as unknown as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const f of desc.fields) {
    const v = m[f.localName];
    switch (f.fieldKind) {
      case "scalar":
        out[f.name] = scalarOut(f.scalar, v);
        break;
      case "enum":
        out[f.name] = enumOut(f, v as number);
        break;
      case "message":
        out[f.name] = v === undefined ? null : toPlain(f.message, v as Message);
        break;
      case "list": {
        const arr = (v as unknown[]) ?? [];
        if (f.listKind === "scalar") out[f.name] = arr.map((x) => scalarOut(f.scalar, x));
        else if (f.listKind === "enum") out[f.name] = arr.map((x) => enumOut(f, x as number));
        else out[f.name] = arr.map((x) => toPlain(f.message, x as Message));
        break;
      }
      case "map":
        out[f.name] = { ...(v as object) };
        break;
    }
  }
  return out;
}

export function decode<T>(name: MessageName, bytes: Uint8Array): T {
  const d = schema(name);
  return toPlain(d, fromBinary(d, bytes)) as T;
}

// A Heartbeat carries its body as the signed bytes of a HeartbeatBody.
export function decodeHeartbeat<T>(bytes: Uint8Array): T {
  const hb = decode<{ body: Uint8Array }>("Heartbeat", bytes);
  return decode<T>("HeartbeatBody", hb.body);
}

// Plain (snake_case, enums by name or number, numbers for 64-bit) to bytes.
export function encode(name: MessageName, plain: Record<string, unknown>): Uint8Array {
  const d = schema(name);
  return toBinary(d, create(d, fromPlain(d, plain) as never));
}

function scalarIn(t: ScalarType, v: unknown): unknown {
  return LONG.has(t) ? BigInt(Math.round(Number(v))) : v;
}

function enumIn(f: DescField, v: unknown): number {
  if (typeof v === "number") return v;
  const e = f.fieldKind === "enum" || (f.fieldKind === "list" && f.listKind === "enum") ? f.enum : undefined;
  const x = e?.values.find((x) => x.name === v);
  if (!x) throw new Error(`${f.name}: no enum value ${String(v)}`);
  return x.number;
}

function fromPlain(desc: DescMessage, plain: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(plain)) {
    const f = desc.fields.find((x) => x.name === k);
    if (!f) throw new Error(`${desc.name} has no field ${k}`);
    if (v === null || v === undefined) continue;
    switch (f.fieldKind) {
      case "scalar":
        out[f.localName] = scalarIn(f.scalar, v);
        break;
      case "enum":
        out[f.localName] = enumIn(f, v);
        break;
      case "message":
        out[f.localName] = create(f.message, fromPlain(f.message, v as Record<string, unknown>) as never);
        break;
      case "list": {
        const arr = v as unknown[];
        if (f.listKind === "scalar") out[f.localName] = arr.map((x) => scalarIn(f.scalar, x));
        else if (f.listKind === "enum") out[f.localName] = arr.map((x) => enumIn(f, x));
        else out[f.localName] = arr.map((x) => create(f.message, fromPlain(f.message, x as Record<string, unknown>) as never));
        break;
      }
      case "map":
        out[f.localName] = v;
        break;
    }
  }
  return out;
}

export function encodeAck(ack: AckMsg): Uint8Array {
  return encode("Ack", ack as unknown as Record<string, unknown>);
}
