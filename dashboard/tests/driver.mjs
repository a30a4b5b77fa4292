#!/usr/bin/env node
// A headless Chromium (Debian's, never a downloaded one) driven by
// playwright-core, taking commands as JSON lines on stdin and answering one
// JSON line each on stdout: {"id":N,"ok":true,"value":...} or
// {"id":N,"ok":false,"error":"..."}. tests/integration/test_dashboard.py
// drives it while it plays the relay, restarts the broker, and so on.
//
// Commands ({"id":N,"cmd":NAME,...}):
//   open {url,width,height}      load a page (a fresh profile per driver)
//   viewport {width,height}      resize
//   wait {selector,state?,timeout?}          state: visible|hidden|attached|detached
//   waitText {selector,text,timeout?}        element's text contains text
//   waitFn {expr,timeout?}       until the page expression is truthy; returns it
//   eval {expr}                  the page expression's value (JSON)
//   click {selector} | focus {selector} | press {key} | type {selector,text}
//   text {selector}              innerText
//   screenshot {path,fullPage?,selector?}   the page, or one element
//   report                       console errors, page errors, blocked requests, websockets
//   close
//
// Every request that is not to a loopback address is aborted and reported:
// the page must need nothing from the internet.
//
// Options: --chromium PATH (default $CHROMIUM or /usr/bin/chromium), --profile DIR
// (a fresh user-data-dir is made and removed when not given).
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const argv = process.argv.slice(2);
const opt = (name, def) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : def;
};
const executablePath = opt("--chromium", process.env.CHROMIUM || "/usr/bin/chromium");
const givenProfile = opt("--profile", null);
const profile = givenProfile ?? mkdtempSync(join(tmpdir(), "vigie-chromium-"));

const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--no-default-browser-check",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-domain-reliability",
  "--disable-client-side-phishing-detection",
  "--no-proxy-server",
  // No name resolves but localhost: whatever part of the browser would
  // phone home cannot reach anything off this machine.
  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
  "--metrics-recording-only",
  "--password-store=basic",
];

// Chromium dies with this driver even if the driver is killed with -9
// (setpriv --pdeathsig, where util-linux has it): no browser left behind.
function browserCommand() {
  for (const setpriv of ["/usr/bin/setpriv", "/bin/setpriv"]) {
    try {
      accessSync(setpriv, constants.X_OK);
    } catch {
      continue;
    }
    const wrapper = join(profile, "..", `chromium-${process.pid}.sh`);
    writeFileSync(wrapper, `#!/bin/sh\nexec ${setpriv} --pdeathsig KILL -- '${executablePath.replace(/'/g, "'\\''")}' "$@"\n`, { mode: 0o755 });
    cleanup.push(() => rmSync(wrapper, { force: true }));
    return wrapper;
  }
  return executablePath;
}
const cleanup = [];

const LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]", "::1"]);
const report = { console: [], pageErrors: [], blocked: [], websockets: [] };

function isLocal(url) {
  if (url.startsWith("data:") || url.startsWith("about:") || url.startsWith("blob:")) return true;
  try {
    const u = new URL(url);
    return LOOPBACK.has(u.hostname) || u.hostname.startsWith("127.");
  } catch {
    return false;
  }
}

let context = null;
let page = null;

async function ensurePage(width = 1280, height = 800) {
  if (page) return page;
  context = await chromium.launchPersistentContext(profile, {
    executablePath: browserCommand(),
    headless: true,
    args: ARGS,
    viewport: { width, height },
    deviceScaleFactor: 1,
    locale: "en-GB",
    timezoneId: "Europe/Paris",
    reducedMotion: "reduce",
  });
  await context.route("**/*", (route) => {
    const url = route.request().url();
    if (isLocal(url)) return route.continue();
    report.blocked.push(url);
    return route.abort("blockedbyclient");
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") report.console.push(`${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => report.pageErrors.push(String(e)));
  page.on("websocket", (ws) => {
    report.websockets.push(ws.url());
    if (!isLocal(ws.url())) report.blocked.push(ws.url());
  });
  return page;
}

const T = (c, def = 10000) => (typeof c.timeout === "number" ? c.timeout : def);

const commands = {
  async open(c) {
    const p = await ensurePage(c.width, c.height);
    if (c.width && c.height) await p.setViewportSize({ width: c.width, height: c.height });
    await p.goto(c.url, { waitUntil: "load", timeout: T(c, 20000) });
    return p.url();
  },
  async viewport(c) {
    await page.setViewportSize({ width: c.width, height: c.height });
    return true;
  },
  async wait(c) {
    await page.locator(c.selector).first().waitFor({ state: c.state ?? "visible", timeout: T(c) });
    return true;
  },
  async waitText(c) {
    const t0 = Date.now();
    await page.waitForFunction(
      ([sel, text]) => Array.from(document.querySelectorAll(sel)).some((e) => (e.textContent || "").includes(text)),
      [c.selector, c.text],
      { timeout: T(c), polling: 25 },
    );
    return Date.now() - t0;
  },
  // Polled from here with page.evaluate (the DevTools protocol's evaluation):
  // waitForFunction would compile the string inside the page, which the
  // page's Content-Security-Policy (no 'unsafe-eval') forbids.
  async waitFn(c) {
    const end = Date.now() + T(c);
    for (;;) {
      const v = await page.evaluate(c.expr);
      if (v) return v;
      if (Date.now() > end) throw new Error(`timed out after ${T(c)} ms waiting for ${c.expr}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  },
  async eval(c) {
    return page.evaluate(c.expr);
  },
  async click(c) {
    await page.locator(c.selector).first().click({ timeout: T(c) });
    return true;
  },
  async focus(c) {
    await page.locator(c.selector).first().focus({ timeout: T(c) });
    return true;
  },
  async press(c) {
    await page.keyboard.press(c.key);
    return true;
  },
  async type(c) {
    await page.locator(c.selector).first().fill(c.text, { timeout: T(c) });
    return true;
  },
  async text(c) {
    return page.locator(c.selector).first().innerText({ timeout: T(c) });
  },
  async screenshot(c) {
    if (c.selector) await page.locator(c.selector).first().screenshot({ path: c.path, animations: "disabled" });
    else await page.screenshot({ path: c.path, fullPage: !!c.fullPage, animations: "disabled" });
    return c.path;
  },
  async report() {
    return report;
  },
  async close() {
    await shutdown(0);
  },
};

function send(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

let closing = false;
async function shutdown(code) {
  if (closing) return;
  closing = true;
  try {
    if (context) await context.close();
  } catch {
    // the browser is gone already
  }
  if (!givenProfile) rmSync(profile, { recursive: true, force: true });
  for (const f of cleanup) f();
  process.exit(code);
}

process.on("SIGTERM", () => void shutdown(0));
process.on("SIGINT", () => void shutdown(0));

// One command at a time, in order.
let chain = Promise.resolve();
const rl = createInterface({ input: process.stdin });
rl.on("line", (line) => {
  if (!line.trim()) return;
  chain = chain.then(async () => {
    let c;
    try {
      c = JSON.parse(line);
    } catch (e) {
      send({ id: null, ok: false, error: `bad JSON: ${e.message}` });
      return;
    }
    const fn = commands[c.cmd];
    if (!fn) return send({ id: c.id, ok: false, error: `unknown command ${c.cmd}` });
    try {
      const value = await fn(c);
      send({ id: c.id, ok: true, value: value ?? null });
    } catch (e) {
      send({ id: c.id, ok: false, error: String(e && e.message ? e.message : e).split("\n").slice(0, 6).join("\n") });
    }
  });
});
rl.on("close", () => void chain.then(() => shutdown(0)));
send({ id: 0, ok: true, value: "ready" });
