import { PerformanceObserver } from 'node:perf_hooks';
import { parseMessage } from '../src/ingest/parse.js';

// `npm run build && node --expose-gc dist/bench/parseMicro.js`: parseMessage
// alone on the payload shapes sensors send (simulators/simulate.ts,
// bench/fixedLoad.ts), per shape: ns per call, bytes allocated per call
// (heap growth over 1,000 calls with no GC in between, median of 50 samples)
// and young-generation collections per million calls. Issue 15.

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');
const N = Number(process.env.PARSE_N ?? 200_000);
const ROUNDS = Number(process.env.PARSE_ROUNDS ?? 5);
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

const out: Record<string, unknown>[] = [];
for (const [name, make] of Object.entries(shapes)) {
  // fresh Buffers per message, as the MQTT parser makes them
  const payloads = Array.from({ length: N }, (_, i) => Buffer.from(make(i)));
  const tps = payloads.map((_, i) => topics[i % topics.length]!);
  let sink = 0;
  const run = (from: number, to: number) => {
    for (let i = from; i < to; i++) {
      const r = parseMessage(tps[i]!, payloads[i]!, NOW, LIMITS);
      sink += r.readings.length ? r.readings[0]!.value : -1;
    }
  };
  run(0, N); // warm up
  const ns: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const t0 = process.hrtime.bigint();
    run(0, N);
    ns.push(Number(process.hrtime.bigint() - t0) / N);
  }
  const bytes: number[] = [];
  for (let s = 0; s < 50; s++) {
    gc();
    const h0 = process.memoryUsage().heapUsed;
    const g0 = gcs;
    run(s * 1000, s * 1000 + 1000);
    const h1 = process.memoryUsage().heapUsed;
    if (gcs === g0) bytes.push((h1 - h0) / 1000);
  }
  bytes.sort((a, b) => a - b);
  await new Promise((r) => setImmediate(r)); // let the gc observer catch up
  const g0 = gcs;
  for (let round = 0; round < 5; round++) run(0, N);
  await new Promise((r) => setImmediate(r));
  ns.sort((a, b) => a - b);
  out.push({
    shape: name,
    bytes: payloads[0]!.length,
    ns_per_call_median: Math.round(ns[ns.length >> 1]! * 10) / 10,
    ns_per_call_min: Math.round(ns[0]! * 10) / 10,
    alloc_bytes_per_call: bytes.length ? Math.round(bytes[bytes.length >> 1]!) : null,
    scavenges_per_million: Math.round(((gcs - g0) * 1e6) / (5 * N)),
    sink: Math.round(sink) % 10,
  });
}
console.table(out);
