#!/usr/bin/env node
// vigie-dashboard static server: serves the built dashboard (dist/) and a
// config.json made from the options below. Node's standard library only.
//
//   node serve.mjs [--host 127.0.0.1] [--port 8480] [--dist DIR]
//                  [--broker ws://127.0.0.1:9001] [--user dashboard]
//                  [--secrets CENTRAL/secrets | --password-file FILE]
//                  [--ack-post ID] [--operator NAME] [--title TEXT]
//
// With --secrets (the central broker's secrets file written by
// vigie-broker-config) or --password-file, config.json carries the password
// and the page connects at once; without, the page's form asks for it.
import { createServer } from "node:http";
import { readFileSync, realpathSync, statSync, createReadStream } from "node:fs";
import { extname, join, resolve, sep, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

const USAGE = `usage: serve.mjs [--host ADDR] [--port PORT] [--dist DIR] [--broker WS_URL]
                 [--user USER] [--secrets FILE | --password-file FILE]
                 [--ack-post POST] [--operator NAME] [--title TEXT]
Serves the Vigie dashboard on http://ADDR:PORT/ (default 127.0.0.1:8480).
Exit status: 0 stopped by a signal, 1 cannot serve, 2 bad usage.`;

function fail(msg, code = 2) {
  process.stderr.write(`vigie-dashboard: ${msg}\n`);
  process.exit(code);
}

function parseArgs(argv) {
  const o = {
    host: "127.0.0.1",
    port: 8480,
    dist: join(here, "dist"),
    broker: "ws://127.0.0.1:9001",
    user: "dashboard",
    secrets: null,
    passwordFile: null,
    ackPost: null,
    operator: null,
    title: null,
  };
  const names = {
    "--host": "host",
    "--port": "port",
    "--dist": "dist",
    "--broker": "broker",
    "--user": "user",
    "--secrets": "secrets",
    "--password-file": "passwordFile",
    "--ack-post": "ackPost",
    "--operator": "operator",
    "--title": "title",
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "-h" || a === "--help") {
      process.stdout.write(USAGE + "\n");
      process.exit(0);
    }
    const [flag, inline] = a.includes("=") ? [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)] : [a, null];
    const key = names[flag];
    if (!key) fail(`unknown option ${a}\n${USAGE}`);
    const v = inline ?? argv[++i];
    if (v === undefined) fail(`${flag} needs a value`);
    o[key] = v;
  }
  const port = Number(o.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`--port ${o.port}: not a port number`);
  o.port = port;
  if (!/^wss?:\/\/[^\s]+$/.test(o.broker)) fail(`--broker ${o.broker}: give a ws:// or wss:// URL`);
  if (o.ackPost !== null && !/^[a-z0-9_-]{1,64}$/.test(o.ackPost)) fail(`--ack-post ${o.ackPost}: ids are [a-z0-9_-], 1-64 characters`);
  if (o.secrets && o.passwordFile) fail("--secrets and --password-file: give one");
  return o;
}

// The generator's secrets file: INI, section [users], "name = password".
function passwordFromSecrets(path, user) {
  let text;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    fail(`--secrets ${path}: ${e.code === "ENOENT" ? "no such file" : e.message}`);
  }
  let section = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#") || line.startsWith(";")) continue;
    const m = /^\[(.+)\]$/.exec(line);
    if (m) {
      section = m[1];
      continue;
    }
    const eq = line.indexOf("=");
    if (section === "users" && eq > 0 && line.slice(0, eq).trim() === user) return line.slice(eq + 1).trim();
  }
  fail(`--secrets ${path}: no password for user ${user} in [users]`);
}

function configJson(o) {
  const cfg = { brokerUrl: o.broker, username: o.user };
  if (o.secrets) cfg.password = passwordFromSecrets(o.secrets, o.user);
  if (o.passwordFile) {
    try {
      cfg.password = readFileSync(o.passwordFile, "utf8").trim();
    } catch (e) {
      fail(`--password-file ${o.passwordFile}: ${e.code === "ENOENT" ? "no such file" : e.message}`);
    }
  }
  if (o.ackPost) cfg.ackPost = o.ackPost;
  if (o.operator) cfg.operator = o.operator;
  if (o.title) cfg.title = o.title;
  return JSON.stringify(cfg, null, 2) + "\n";
}

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".txt": "text/plain; charset=utf-8",
};

function main() {
  const o = parseArgs(process.argv.slice(2));
  let root;
  try {
    root = realpathSync(resolve(o.dist));
    statSync(join(root, "index.html"));
  } catch {
    fail(`${o.dist}/index.html not found: build first (cd dashboard && npm ci && npm run build)`, 1);
  }
  const config = configJson(o);
  // connect-src ws: wss:: the page's form may name another broker.
  const csp = [
    "default-src 'self'",
    "connect-src 'self' ws: wss:",
    "img-src 'self' data:",
    "style-src 'self'",
    "script-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
  ].join("; ");

  const server = createServer((req, res) => {
    const common = {
      "X-Content-Type-Options": "nosniff",
      "Referrer-Policy": "no-referrer",
      "Content-Security-Policy": csp,
    };
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { ...common, Allow: "GET, HEAD" });
      return res.end();
    }
    let path;
    try {
      path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    } catch {
      res.writeHead(400, common);
      return res.end("bad request\n");
    }
    if (path === "/config.json") {
      res.writeHead(200, { ...common, "Content-Type": TYPES[".json"], "Cache-Control": "no-store" });
      return res.end(req.method === "HEAD" ? undefined : config);
    }
    if (path.endsWith("/")) path += "index.html";
    if (path.split("/").some((p) => p.startsWith("."))) {
      res.writeHead(404, common);
      return res.end("not found\n");
    }
    let file;
    try {
      file = realpathSync(join(root, path));
      if (file !== root && !file.startsWith(root + sep)) throw new Error("outside");
      if (!statSync(file).isFile()) throw new Error("not a file");
    } catch {
      res.writeHead(404, { ...common, "Content-Type": TYPES[".txt"] });
      return res.end("not found\n");
    }
    const immutable = file.includes(`${sep}assets${sep}`);
    res.writeHead(200, {
      ...common,
      "Content-Type": TYPES[extname(file)] ?? "application/octet-stream",
      "Cache-Control": immutable ? "public, max-age=31536000, immutable" : "no-cache",
    });
    if (req.method === "HEAD") return res.end();
    createReadStream(file).pipe(res);
  });
  server.on("error", (e) => fail(`cannot listen on ${o.host}:${o.port}: ${e.message}`, 1));
  server.listen(o.port, o.host, () => {
    const { port } = server.address();
    const host = o.host.includes(":") ? `[${o.host}]` : o.host;
    process.stdout.write(`vigie-dashboard: http://${host}:${port}/  (broker ${o.broker}, user ${o.user}` +
      `${o.secrets || o.passwordFile ? ", password served in config.json" : ", the page asks for the password"})\n`);
  });
  const stop = () => server.close(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  // Open keep-alive connections would hold close(); do not wait for them.
  process.on("SIGTERM", () => setTimeout(() => process.exit(0), 500).unref());
  process.on("SIGINT", () => setTimeout(() => process.exit(0), 500).unref());
}

main();
