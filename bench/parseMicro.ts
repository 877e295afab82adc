import { PerformanceObserver } from 'node:perf_hooks';
import { parseMessage } from '../src/ingest/parse.js';

// `npm run build && node --expose-gc dist/bench/parseMicro.js`: parseMessage
// alone on the payload shapes sensors send (simulators/simulate.ts,
// bench/fixedLoad.ts), per shape: ns per call, bytes allocated per call
// (heap growth over 1,000 calls with no GC in between, median of 50 samples)
// and young-generation collections per million calls. Issue 15.

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');
// 20,000 payloads (~2 MB with their Buffer objects) stay mostly in cache, as a just-received payload is
const N = Number(process.env.PARSE_N ?? 20_000);
const ROUNDS = Number(process.env.PARSE_ROUNDS ?? 40);
const NOW = 1764543600000;
const LIMITS = { maxPayloadBytes: 65536, maxFutureSkewS: 300, maxAgeS: 604800 };
const types = ['temperature', 'humidity', 'power', 'co2'];
const units = ['celsius', 'percent', 'W', 'ppm'];
const topics: string[] = [];
for (let b = 1; b <= 10; b++)
  for (let r = 1; r <= 100; r++)
    for (const t of types) topics.push(`sensors/building_${String(b).padStart(3, '0')}/2/room_${r}/${t}`);

const value = (i: number) => Math.round(((i * 7919) % 10000) + 1) / 100;
const shapes: Record<string, (i: number) => string> = {
  value_unit_ts: (i) => JSON.stringify({ value: value(i), unit: units[i % 4], timestamp: NOW - (i % 1000) }),
  value_ts: (i) => JSON.stringify({ value: value(i), timestamp: NOW - (i % 1000) }),
  bare_number: (i) => String(value(i)),
  iso_extras: (i) =>
    JSON.stringify({
      value: value(i),
      unit: units[i % 4],
      timestamp: new Date(NOW - (i % 1000) * 1000).toISOString(),
      battery: 87,
      firmware: 'v1.2.3',
      calibrated: true,
    }),
};

let gcs = 0;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) if ((e as { detail?: { kind?: number } }).detail?.kind === 1) gcs++;
}).observe({ entryTypes: ['gc'] });

// fresh Buffers per message, as the MQTT parser makes them
const sets = Object.entries(shapes).map(([name, make]) => ({
  name,
  payloads: Array.from({ length: N }, (_, i) => Buffer.from(make(i))),
  tps: Array.from({ length: N }, (_, i) => topics[i % topics.length]!),
  ns: [] as number[],
}));
// a typed array: a captured `let` double would allocate a heap number per call
const sink = new Float64Array(1);
const run = (set: (typeof sets)[number], from: number, to: number) => {
  const { payloads, tps } = set;
  for (let i = from; i < to; i++) {
    const r = parseMessage(tps[i]!, payloads[i]!, NOW, LIMITS);
    sink[0]! += r.readings.length ? r.readings[0]!.value : -1;
  }
};
for (const set of sets) run(set, 0, N); // warm up
// rounds alternate the shapes, so a burst of load elsewhere on the machine hits them alike
for (let round = 0; round < ROUNDS; round++)
  for (const set of sets) {
    const t0 = process.hrtime.bigint();
    run(set, 0, N);
    set.ns.push(Number(process.hrtime.bigint() - t0) / N);
  }
const out: Record<string, unknown>[] = [];
for (const set of sets) {
  const bytes: number[] = [];
  for (let s = 0; s < 50; s++) {
    gc();
    const h0 = process.memoryUsage().heapUsed;
    const g0 = gcs;
    run(set, (s * 1000) % N, ((s * 1000) % N) + 1000);
    const h1 = process.memoryUsage().heapUsed;
    if (gcs === g0) bytes.push((h1 - h0) / 1000);
  }
  bytes.sort((a, b) => a - b);
  await new Promise((r) => setTimeout(r, 200)); // let the gc observer catch up
  const g0 = gcs;
  for (let round = 0; round < 50; round++) run(set, 0, N);
  await new Promise((r) => setTimeout(r, 200));
  const ns = set.ns.sort((a, b) => a - b);
  out.push({
    shape: set.name,
    bytes: set.payloads[0]!.length,
    ns_per_call_median: Math.round(ns[ns.length >> 1]! * 10) / 10,
    ns_per_call_min: Math.round(ns[0]! * 10) / 10,
    alloc_bytes_per_call: bytes.length ? Math.round(bytes[bytes.length >> 1]!) : null,
    scavenges_per_million: Math.round(((gcs - g0) * 1e6) / (50 * N)),
  });
}
console.table(out);
console.log(JSON.stringify({ sink: sink[0]! > 0, loadavg: (await import('node:os')).loadavg() }));
