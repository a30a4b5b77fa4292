/// <reference types="vitest/config" />
// Build of the Vigie dashboard. The wire contract is read from
// ../proto/vigie.proto at build time (the single source of truth) and handed
// to the page as a FileDescriptorSet through the virtual module
// "virtual:vigie-proto": no copy of the .proto, no generated code in the tree.
import { defineConfig, type Plugin } from "vite";
import { PROTO, descriptorSet } from "./proto-descriptor.mjs";

const VIRTUAL = "virtual:vigie-proto";
const RESOLVED = "\0" + VIRTUAL;

export function vigieProto(path = PROTO): Plugin {
  return {
    name: "vigie-proto",
    resolveId(id) {
      return id === VIRTUAL ? RESOLVED : null;
    },
    load(id) {
      if (id !== RESOLVED) return null;
      this.addWatchFile(path);
      const b64 = Buffer.from(descriptorSet(path)).toString("base64");
      return `export default ${JSON.stringify(b64)};`;
    },
  };
}

// One classic script, not an ES module: Mosquitto's http_dir (2.0.11) sends
// no Content-Type, and browsers refuse module scripts without one.
function classicScript(): Plugin {
  return {
    name: "vigie-classic-script",
    apply: "build",
    enforce: "post",
    transformIndexHtml(html) {
      return html.replace(/<script type="module" crossorigin src=/g, "<script defer src=").replace(/ crossorigin(?=[ >])/g, "");
    },
  };
}

export default defineConfig({
  base: "./", // works at any path: a static server's root or mosquitto's http_dir
  plugins: [vigieProto(), classicScript()],
  build: {
    target: "es2020",
    sourcemap: true,
    modulePreload: false,
    cssCodeSplit: false,
    rollupOptions: { output: { format: "iife", inlineDynamicImports: true } },
  },
  server: { host: "127.0.0.1", strictPort: true },
  preview: { host: "127.0.0.1", strictPort: true },
  test: {
    include: ["tests/unit/**/*.test.ts"],
    environment: "node",
  },
});
