// Build time: ../proto/vigie.proto -> a serialized google.protobuf.FileDescriptorSet.
// protobufjs parses the .proto here, in node, at build time only; the page
// decodes with @bufbuild/protobuf from this descriptor (no code generation
// at run time, no eval: the page keeps a strict Content-Security-Policy).
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const protobuf = require("protobufjs");
require("protobufjs/ext/descriptor");

export const PROTO = fileURLToPath(new URL("../proto/vigie.proto", import.meta.url));

export function descriptorSet(path = PROTO) {
  const root = new protobuf.Root();
  protobuf.parse(readFileSync(path, "utf8"), root, { keepCase: true });
  root.resolveAll();
  const set = root.toDescriptor("proto3");
  // protobufjs names field types relative to their scope ("EventKind");
  // descriptor consumers want them fully qualified (".vigie.v1.EventKind"),
  // as protoc writes them.
  const qualify = (msgs, scope) => {
    for (const m of msgs) {
      const type = root.lookupType(`${scope}.${m.name}`);
      for (const f of m.field) {
        if (!f.typeName) continue;
        const rf = type.fields[f.name];
        if (!rf || !rf.resolvedType) throw new Error(`${scope}.${m.name}.${f.name}: type ${f.typeName} not found`);
        f.typeName = rf.resolvedType.fullName; // ".vigie.v1.EventKind"
      }
      qualify(m.nestedType, `${scope}.${m.name}`);
    }
  };
  for (const f of set.file) {
    f.name = "vigie.proto";
    qualify(f.messageType, f.package);
  }
  const T = root.lookup("google.protobuf.FileDescriptorSet") ??
    protobuf.Root.fromJSON(require("protobufjs/google/protobuf/descriptor.json")).lookupType("google.protobuf.FileDescriptorSet");
  return T.encode(set).finish();
}
