// Where the settings come from, later ones winning (README.md "Settings"):
//   1. config.json served next to index.html (serve.mjs writes it from its
//      options; a static copy works too);
//   2. what the login form saved: localStorage (operator, broker, user, post)
//      and sessionStorage (password: this tab only);
//   3. the URL query: ?broker=ws://127.0.0.1:9001&user=dashboard&operator=Name&post=pp-paris-1
//   4. the URL fragment, never sent to any server: #password=... (any key of
//      the query works there too); it is removed from the address bar at once.

export interface Config {
  brokerUrl: string;
  username: string;
  password: string;
  operator: string;
  ackPost: string; // post the acks go to when no dispatch of the incident was seen
  title: string;
}

export const DEFAULTS: Config = {
  brokerUrl: "",
  username: "dashboard",
  password: "",
  operator: "",
  ackPost: "dashboard",
  title: "Vigie",
};

const KEYS: Record<string, keyof Config> = {
  broker: "brokerUrl",
  brokerUrl: "brokerUrl",
  url: "brokerUrl",
  user: "username",
  username: "username",
  password: "password",
  operator: "operator",
  post: "ackPost",
  ackPost: "ackPost",
  title: "title",
};

const STORE = "vigie-dashboard";

function pick(src: Record<string, unknown>): Partial<Config> {
  const out: Partial<Config> = {};
  for (const [k, v] of Object.entries(src)) {
    const key = KEYS[k];
    if (key && typeof v === "string") out[key] = v;
  }
  return out;
}

function fromParams(p: URLSearchParams): Partial<Config> {
  const o: Record<string, string> = {};
  p.forEach((v, k) => (o[k] = v));
  return pick(o);
}

export function sameOriginBroker(loc: Location): string {
  // The page served by the broker's own websockets listener (http_dir).
  return `${loc.protocol === "https:" ? "wss" : "ws"}://${loc.host}/mqtt`;
}

export async function loadConfig(loc: Location = window.location): Promise<Config> {
  let file: Partial<Config> = {};
  try {
    const r = await fetch("config.json", { cache: "no-store" });
    if (r.ok) file = pick(await r.json());
  } catch {
    // no config.json: the form asks
  }
  let saved: Partial<Config> = {};
  try {
    saved = pick(JSON.parse(localStorage.getItem(STORE) || "{}"));
    const pw = sessionStorage.getItem(`${STORE}-password`);
    if (pw) saved.password = pw;
  } catch {
    // storage disabled
  }
  const query = fromParams(new URLSearchParams(loc.search));
  const frag = fromParams(new URLSearchParams(loc.hash.replace(/^#/, "")));
  if (loc.hash && frag.password !== undefined) {
    history.replaceState(null, "", loc.pathname + loc.search);
  }
  fileConfig = file;
  const cfg: Config = { ...DEFAULTS, ...file, ...saved, ...query, ...frag };
  cfg.operator = cfg.operator.trim().slice(0, 64); // the relay keeps 64 bytes
  if (!cfg.brokerUrl && (loc.protocol === "http:" || loc.protocol === "https:")) cfg.brokerUrl = sameOriginBroker(loc);
  return cfg;
}

// The form's values, kept only where they differ from config.json's (so a
// server-side change of config.json is not hidden by an old saved copy).
let fileConfig: Partial<Config> = {};

export function saveConfig(cfg: Config): void {
  try {
    const { password, ...rest } = cfg;
    const keep: Partial<Config> = {};
    for (const [k, v] of Object.entries(rest) as [keyof Config, string][])
      if (k === "operator" || v !== (fileConfig[k] ?? DEFAULTS[k])) keep[k] = v;
    localStorage.setItem(STORE, JSON.stringify(keep));
    sessionStorage.setItem(`${STORE}-password`, password);
  } catch {
    // storage disabled: the settings last as long as the page
  }
}

export function missing(cfg: Config): string[] {
  const out: string[] = [];
  if (!cfg.operator.trim()) out.push("operator name");
  if (!cfg.brokerUrl.trim()) out.push("broker address");
  else if (!/^wss?:\/\//.test(cfg.brokerUrl.trim())) out.push("a ws:// or wss:// broker address");
  if (!cfg.username.trim()) out.push("user");
  if (!cfg.password) out.push("password");
  return out;
}
