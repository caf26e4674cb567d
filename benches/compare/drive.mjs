// Closed-loop load driver for benches/compare (warden and Restate; Temporal has temporal/drive.py).
// C clients each issue one durable call at a time, back to back, until N calls are done; a
// warm-up of W calls runs first and is not counted. One JSON line and one markdown table row
// go to stdout, progress to stderr.
//
//   node drive.mjs --system warden  --url http://127.0.0.1:18000 --clients 64 --n 4000 [--warmup 200]
//   node drive.mjs --system restate --url http://127.0.0.1:18080 --clients 64 --n 4000
//
// warden: each client opens one turn (session bench-<run>-<client>) before the run; a call is
//   POST /v1/actions {turn_id, capability: "bench.effect", args, idempotency_key} (answered once
//   the submission is committed), then GET /v1/actions/{id}?wait_ms=30000 until it is terminal.
// restate: a call is POST /Bench/call on the ingress, which answers with the handler's result.
import http from "node:http";
import { parseArgs } from "node:util";

const { values: opt } = parseArgs({
  options: {
    system: { type: "string" },
    url: { type: "string" },
    clients: { type: "string", default: "64" },
    n: { type: "string", default: "4000" },
    warmup: { type: "string", default: "200" },
  },
});
const system = opt.system;
const base = new URL(opt.url);
const C = Number(opt.clients), N = Number(opt.n), W = Number(opt.warmup);
if (!["warden", "restate"].includes(system) || !(C > 0 && N > 0 && W >= 0)) {
  console.error("usage: node drive.mjs --system warden|restate --url URL --clients C --n N [--warmup W]");
  process.exit(2);
}
const agent = new http.Agent({ keepAlive: true, maxSockets: C, maxFreeSockets: C });
const run = `${process.pid}-${Date.now().toString(36)}`;
const TERMINAL = new Set(["succeeded", "failed", "dead_lettered", "denied", "expired", "rejected"]);

function request(method, path, body) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const headers = data === undefined ? {} : { "content-type": "application/json", "content-length": Buffer.byteLength(data) };
    const req = http.request({ host: base.hostname, port: base.port, method, path, agent, headers }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString();
        if (res.statusCode >= 300) return reject(new Error(`${method} ${path}: ${res.statusCode} ${text.slice(0, 300)}`));
        try { resolve(text ? JSON.parse(text) : null); } catch (e) { reject(new Error(`${method} ${path}: bad JSON ${text.slice(0, 200)}`)); }
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(data);
  });
}

// One durable call; resolves true when it succeeded.
const call = {
  async warden(client, i) {
    const a = await request("POST", "/v1/actions", {
      turn_id: client.turn, capability: "bench.effect", args: { i }, idempotency_key: `bench-${run}-${i}`,
    });
    let state = a.state;
    while (!TERMINAL.has(state)) state = (await request("GET", `/v1/actions/${a.action_id}?wait_ms=30000`)).state;
    return state === "succeeded";
  },
  async restate(_client, i) {
    const r = await request("POST", "/Bench/call", { i });
    return r && r.i === i;
  },
}[system];

async function setup(c) {
  if (system !== "warden") return {};
  const t = await request("POST", `/v1/sessions/bench-${run}-${c}/turns`, { summary: "compare bench client" });
  return { turn: t.turn_id };
}

// Runs `total` calls over the clients; returns latencies (ms), errors and wall time (s).
async function phase(clients, total, first) {
  let next = 0, errors = 0, done = 0;
  const lat = [];
  const t0 = performance.now();
  const tick = setInterval(() => console.error(`  ${system} C=${C}: ${done}/${total}`), 2000);
  await Promise.all(clients.map(async (client) => {
    while (next < total) {
      const i = first + next++;
      const s = performance.now();
      let ok = false;
      try { ok = await call(client, i); } catch (e) { if (errors < 5) console.error(`  error: ${e.message}`); }
      lat.push(performance.now() - s);
      if (!ok) errors++;
      done++;
    }
  }));
  clearInterval(tick);
  return { lat, errors, wall: (performance.now() - t0) / 1000 };
}

const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];

const clients = await Promise.all(Array.from({ length: C }, (_, c) => setup(c)));
if (W > 0) {
  const w = await phase(clients, W, 0);
  console.error(`  ${system} C=${C}: warm-up ${W} calls in ${w.wall.toFixed(2)} s, ${w.errors} errors`);
}
const m = await phase(clients, N, W);
const sorted = m.lat.sort((a, b) => a - b);
const r = {
  system, clients: C, n: N, warmup: W, errors: m.errors, wall_s: +m.wall.toFixed(3),
  throughput: +(N / m.wall).toFixed(1), p50_ms: +pct(sorted, 50).toFixed(2), p99_ms: +pct(sorted, 99).toFixed(2),
};
console.log(JSON.stringify(r));
console.log(`| ${system} | ${C} | ${N} | ${r.throughput} | ${r.p50_ms} | ${r.p99_ms} | ${r.errors} |`);
agent.destroy();
process.exit(m.errors > 0 ? 1 : 0);
