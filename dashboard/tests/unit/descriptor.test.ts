// The descriptor the page uses (protobufjs parsing ../proto/vigie.proto at
// build time) against protoc's, field by field, when protoc is installed.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema, type FileDescriptorProto } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { PROTO, descriptorSet } from "../../proto-descriptor.mjs";

function protoc(): Uint8Array | null {
  const dir = mkdtempSync(join(tmpdir(), "vigie-desc-"));
  try {
    const out = join(dir, "set.pb");
    const r = spawnSync("protoc", [`--descriptor_set_out=${out}`, `-I${dirname(PROTO)}`, PROTO]);
    if (r.error || r.status !== 0) return null;
    return readFileSync(out);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function shape(f: FileDescriptorProto) {
  return {
    package: f.package,
    messages: f.messageType.map((m) => ({
      name: m.name,
      fields: m.field.map((x) => [x.name, x.number, x.label, x.type, x.typeName]),
    })),
    enums: f.enumType.map((e) => ({ name: e.name, values: e.value.map((v) => [v.name, v.number]) })),
  };
}

const reference = protoc();

describe("build-time descriptor", () => {
  it.skipIf(!reference)("equals protoc's for every message, field and enum", () => {
    const ours = fromBinary(FileDescriptorSetSchema, descriptorSet()).file[0];
    const theirs = fromBinary(FileDescriptorSetSchema, reference!).file[0];
    expect(shape(ours)).toEqual(shape(theirs));
  });
});
