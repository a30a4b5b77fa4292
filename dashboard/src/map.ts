// The schematic map: the sites (and zones with coordinates) placed from their
// latitude and longitude, with a graticule and a scale bar. No tiles, no
// network: just SVG.
import { s } from "./dom";
import type { SiteView } from "./model";

export const MAP_W = 600;
export const MAP_H = 340;
const PAD = 46;
const STEPS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20];

export interface Projection {
  x(lon: number): number;
  y(lat: number): number;
  kmPerUnit: number;
  lonMin: number;
  lonMax: number;
  latMin: number;
  latMax: number;
}

// Equirectangular around the mean latitude, fitted to the points.
export function project(points: { lat: number; lon: number }[], w = MAP_W, h = MAP_H, pad = PAD): Projection {
  const lat0 = points.reduce((a, p) => a + p.lat, 0) / points.length;
  const k = Math.cos((lat0 * Math.PI) / 180);
  const xs = points.map((p) => p.lon * k);
  const ys = points.map((p) => p.lat);
  let x0 = Math.min(...xs),
    x1 = Math.max(...xs),
    y0 = Math.min(...ys),
    y1 = Math.max(...ys);
  const min = 0.004; // about 450 m: one site alone is not blown up to the whole map
  if (x1 - x0 < min) [x0, x1] = [(x0 + x1) / 2 - min / 2, (x0 + x1) / 2 + min / 2];
  if (y1 - y0 < min) [y0, y1] = [(y0 + y1) / 2 - min / 2, (y0 + y1) / 2 + min / 2];
  const scale = Math.min((w - 2 * pad) / (x1 - x0), (h - 2 * pad) / (y1 - y0));
  const cx = (x0 + x1) / 2,
    cy = (y0 + y1) / 2;
  const x = (lon: number) => w / 2 + (lon * k - cx) * scale;
  const y = (lat: number) => h / 2 - (lat - cy) * scale;
  return {
    x,
    y,
    kmPerUnit: 111.32 / scale,
    lonMin: (cx - w / 2 / scale) / k,
    lonMax: (cx + w / 2 / scale) / k,
    latMin: cy - h / 2 / scale,
    latMax: cy + h / 2 / scale,
  };
}

function niceStep(span: number, lines = 4): number {
  for (const st of STEPS) if (span / st <= lines) return st;
  return STEPS[STEPS.length - 1];
}

function niceKm(maxKm: number): number {
  const steps = [0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];
  let best = steps[0];
  for (const st of steps) if (st <= maxKm) best = st;
  return best;
}

function fmtDeg(v: number, step: number): string {
  const dec = Math.max(0, Math.ceil(-Math.log10(step)));
  return v.toFixed(dec) + "°";
}

const STATE_WORD: Record<string, string> = {
  alarm: "ALARM",
  trouble: "TROUBLE",
  offline: "OFFLINE",
  normal: "NORMAL",
  unknown: "UNKNOWN",
};

export interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}

const overlap = (a: Box, b: Box) => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;

// Text width estimate for DejaVu Sans, bold (no layout pass needed).
const textW = (t: string, px: number) => t.length * px * 0.66;

// Where each label goes: a place that overlaps no marker, no label placed
// before and stays inside the map: right, left, below, above, the corners,
// then further out; failing that, the least crowded place, moved inside.
// `order`: who chooses first.
export function placeLabels(pts: { x: number; y: number }[], sizes: { w: number; h: number }[], order: number[], W: number, H: number): Box[] {
  const markers: Box[] = pts.map(({ x, y }) => ({ x: x - 13, y: y - 13, w: 26, h: 26 }));
  const taken: Box[] = [];
  const out: Box[] = new Array(pts.length);
  const clamp = (b: Box): Box => ({
    ...b,
    x: Math.min(Math.max(2, b.x), Math.max(2, W - 2 - b.w)),
    y: Math.min(Math.max(2, b.y), Math.max(2, H - 2 - b.h)),
  });
  const inside = (b: Box) => b.x >= 2 && b.y >= 2 && b.x + b.w <= W - 2 && b.y + b.h <= H - 2;
  for (const i of order) {
    const { x, y } = pts[i];
    const { w, h } = sizes[i];
    const cands: Box[] = [];
    for (const d of [0, 1, 2, 3, 4]) {
      const off = 18 + d * 20;
      cands.push(
        { x: x + off, y: y - h / 2, w, h },
        { x: x - off - w, y: y - h / 2, w, h },
        { x: x - w / 2, y: y + off - 4, w, h },
        { x: x - w / 2, y: y - off - h + 4, w, h },
        { x: x + off - 8, y: y + off - 8, w, h },
        { x: x + off - 8, y: y - off - h + 8, w, h },
        { x: x - off - w + 8, y: y + off - 8, w, h },
        { x: x - off - w + 8, y: y - off - h + 8, w, h },
      );
    }
    const hits = (b: Box) => [...markers, ...taken].filter((t) => overlap(b, t)).length;
    let best = cands.find((b) => inside(b) && hits(b) === 0);
    if (!best) {
      const moved = cands.map(clamp);
      best = moved.reduce((a, b) => (hits(b) < hits(a) ? b : a), moved[0]);
    }
    out[i] = best;
    taken.push(best);
  }
  return out;
}

// `width`: the map's width in CSS pixels, so that text keeps its size on a
// phone and on a wall screen alike.
export function renderMap(sites: SiteView[], width = MAP_W): SVGElement {
  const W = Math.max(280, Math.round(width));
  const H = Math.round(Math.min(Math.max(W * 0.72, 230), 440));
  const placed = sites.filter((x) => x.location);
  const svg = s("svg", {
    viewBox: `0 0 ${W} ${H}`,
    width: W,
    height: H,
    class: "map",
    role: "group",
    "aria-label": `Schematic map of ${placed.length} museum${placed.length === 1 ? "" : "s"}`,
  });
  svg.appendChild(s("rect", { x: 0, y: 0, width: W, height: H, class: "map-bg" }));
  if (!placed.length) {
    svg.appendChild(s("text", { x: W / 2, y: H / 2, class: "map-empty", "text-anchor": "middle" }, "No site with coordinates yet"));
    return svg;
  }
  const pts: { lat: number; lon: number }[] = [];
  for (const site of placed) {
    pts.push(site.location!);
    for (const z of site.zones) if (z.location && (z.location.lat || z.location.lon)) pts.push(z.location);
  }
  const pad = Math.min(70, Math.max(36, W * 0.1));
  const p = project(pts, W, H, pad);

  // Graticule.
  const g = s("g", { class: "graticule", "aria-hidden": "true" });
  const lonStep = niceStep(p.lonMax - p.lonMin);
  for (let lon = Math.ceil(p.lonMin / lonStep) * lonStep; lon <= p.lonMax; lon += lonStep) {
    const x = p.x(lon);
    g.appendChild(s("line", { x1: x, y1: 0, x2: x, y2: H }));
    g.appendChild(s("text", { x: x + 3, y: H - 4 }, fmtDeg(lon, lonStep)));
  }
  const latStep = niceStep(p.latMax - p.latMin, 3);
  for (let lat = Math.ceil(p.latMin / latStep) * latStep; lat <= p.latMax; lat += latStep) {
    const y = p.y(lat);
    g.appendChild(s("line", { x1: 0, y1: y, x2: W, y2: y }));
    g.appendChild(s("text", { x: 3, y: y - 3 }, fmtDeg(lat, latStep)));
  }
  svg.appendChild(g);

  // Scale bar, bottom right.
  const km = niceKm(p.kmPerUnit * Math.min(140, W / 4));
  const len = km / p.kmPerUnit;
  const sx = W - 16 - len,
    sy = H - 20;
  svg.appendChild(
    s(
      "g",
      { class: "scalebar", "aria-hidden": "true" },
      s("line", { x1: sx, y1: sy, x2: sx + len, y2: sy }),
      s("line", { x1: sx, y1: sy - 4, x2: sx, y2: sy + 4 }),
      s("line", { x1: sx + len, y1: sy - 4, x2: sx + len, y2: sy + 4 }),
      s("text", { x: sx + len / 2, y: sy - 6, "text-anchor": "middle" }, km < 1 ? `${Math.round(km * 1000)} m` : `${km} km`),
    ),
  );
  svg.appendChild(s("text", { x: W - 14, y: 18, class: "north", "text-anchor": "end", "aria-hidden": "true" }, "N ↑"));

  // Zones: small squares; red with an open incident, dashed when uncovered.
  const zg = s("g", { class: "zones", "aria-hidden": "true" });
  for (const site of placed) {
    const hot = new Set(site.incidents.map((i) => i.zone));
    for (const z of site.zones) {
      if (!z.location || (!z.location.lat && !z.location.lon)) continue;
      const x = p.x(z.location.lon),
        y = p.y(z.location.lat);
      const cls = ["zone", hot.has(z.id) ? "zone-hot" : "", site.uncovered.includes(z.id) ? "zone-gap" : ""].join(" ");
      zg.appendChild(s("rect", { x: x - 4, y: y - 4, width: 8, height: 8, class: cls }, s("title", null, z.name || z.id)));
    }
  }
  svg.appendChild(zg);

  // Sites: the most severe choose their label's place first and are drawn
  // last (on top).
  const xy = placed.map((site) => ({ x: p.x(site.location!.lon), y: p.y(site.location!.lat) }));
  const texts = placed.map((site) => {
    const name = site.name.length > 30 ? site.name.slice(0, 29) + "…" : site.name;
    const second =
      STATE_WORD[site.state] + (site.posture === "heightened" || site.posture === "critical" ? ` · posture ${site.posture.toUpperCase()}` : "");
    return { name, second };
  });
  const order = placed.map((_, i) => i).sort((a, b) => rank(placed[b].state) - rank(placed[a].state));
  const boxes = placeLabels(
    xy,
    texts.map((t) => ({ w: Math.max(textW(t.name, 13), textW(t.second, 11)) + 6, h: 30 })),
    order,
    W,
    H,
  );
  const drawn: SVGElement[] = [];
  for (const i of order) {
    const site = placed[i];
    const { x, y } = xy[i];
    const box = boxes[i];
    const n = site.incidents.length;
    const word = STATE_WORD[site.state];
    // A leader line from the marker to its label when the label had to go
    // further than next to it.
    const leaderTo = { x: Math.min(Math.max(x, box.x), box.x + box.w), y: Math.min(Math.max(y, box.y), box.y + box.h) };
    const far = Math.hypot(leaderTo.x - x, leaderTo.y - y) > 24;
    drawn.push(
      s(
        "a",
        {
          href: `#site-${site.id}`,
          class: `site-marker state-${site.state} posture-${site.posture}`,
          "data-key": `map-${site.id}`,
          "aria-label": `${site.name}: ${word}${n ? `, ${n} open incident${n === 1 ? "" : "s"}` : ""}, posture ${site.posture}`,
        },
        far ? s("line", { x1: x, y1: y, x2: leaderTo.x, y2: leaderTo.y, class: "leader" }) : null,
        site.posture === "heightened" || site.posture === "critical" ? s("circle", { cx: x, cy: y, r: 16, class: "posture-ring" }) : null,
        site.state === "alarm" ? s("circle", { cx: x, cy: y, r: 11, class: "pulse" }) : null,
        s("circle", { cx: x, cy: y, r: 10, class: "dot" }),
        s("text", { x, y: y + 4, class: "dot-text", "text-anchor": "middle" }, n ? String(n) : site.state === "normal" ? "✓" : site.state === "offline" ? "×" : "!"),
        s("rect", { x: box.x, y: box.y, width: box.w, height: box.h, rx: 3, class: "label-bg" }),
        s("text", { x: box.x + 3, y: box.y + 13, class: "label" }, texts[i].name),
        s("text", { x: box.x + 3, y: box.y + 27, class: `label-state state-${site.state}` }, texts[i].second),
      ),
    );
  }
  for (const el of drawn.reverse()) svg.appendChild(el);
  return svg;
}

function rank(state: string): number {
  return { normal: 0, unknown: 1, offline: 2, trouble: 3, alarm: 4 }[state] ?? 0;
}
