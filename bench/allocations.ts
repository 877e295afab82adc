import { Session } from 'node:inspector/promises';
import type { InboundPublish } from '../src/broker/ingress.js';
import { startInflux1 } from '../tests/helpers/services.js';
import { startInProcess } from './inProcess.js';

// `node dist/bench/allocations.js`: what the daemon's own path allocates per
// reading, by function (issue 15: garbage was the largest single CPU cost).
// The real daemon in this process, its ingress driven as Aedes drives it
// (bench/hotPath.ts), under V8's sampling heap profiler counting every object,
// also those a young-generation collection freed. Packets are made before the
// profile starts, so only the daemon's allocations are counted.
// ALLOC_COUNT readings (default 100,000), ALLOC_QOS 0|1.

const COUNT = Number(process.env.ALLOC_COUNT ?? 100_000);
const QOS = Number(process.env.ALLOC_QOS ?? 0) as 0 | 1;
const CHUNK = 200;

interface Node {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: Node[];
}

const influx = await startInflux1();
try {
  const { app, ingress } = await startInProcess(influx.url, 'alloc');
  const types = ['temperature', 'humidity', 'power', 'co2'];
  const units = ['celsius', 'percent', 'W', 'ppm'];
  const now = Date.now();
  const packets: InboundPublish[] = [];
  for (let n = 0; n < COUNT; n++) {
    const i = n % 4000;
    packets.push({
      topic: `sensors/building_${String(1 + (i % 10)).padStart(3, '0')}/${i % 7}/room_${i}/${types[i % 4]}`,
      payload: Buffer.from(
        JSON.stringify({
          value: Math.round(Math.random() * 10000) / 100,
          unit: units[i % 4],
          timestamp: now,
        }),
      ),
      qos: QOS,
    });
  }
  const written = () => app.metrics.pointsWritten.get();
  const session = new Session();
  session.connect();
  await session.post('HeapProfiler.startSampling', {
    samplingInterval: 256,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true,
  });
  let acked = 0;
  const done = () => {
    acked++;
  };
  for (let sent = 0; sent < COUNT; ) {
    for (let i = 0; i < CHUNK && sent < COUNT; i++, sent++)
      ingress.authorizePublish(null, packets[sent]!, done);
    await new Promise((r) => setImmediate(r));
    while (sent - acked > CHUNK * 20) await new Promise((r) => setImmediate(r));
  }
  const deadline = Date.now() + 60_000;
  while (written() < COUNT && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  const { profile } = (await session.post('HeapProfiler.stopSampling')) as { profile: { head: Node } };
  const byFn = new Map<string, number>();
  let total = 0;
  const name = (n: Node) =>
    `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.replace(/^.*\/(node_modules|dist)\//, '')}:${n.callFrame.lineNumber + 1}`;
  // by function, with its caller (ALLOC_STACK=1: the whole stack)
  const walk = (n: Node, stack: string[]) => {
    const here = [...stack, name(n)];
    const where = process.env.ALLOC_STACK ? here.slice(-6).join(' < ') : here.slice(-2).reverse().join(' ← ');
    byFn.set(where, (byFn.get(where) ?? 0) + n.selfSize);
    total += n.selfSize;
    for (const c of n.children) walk(c, here);
  };
  walk(profile.head, []);
  console.log(
    `\n## allocated per reading (QoS ${QOS}, ${written()} readings): ${Math.round(total / COUNT)} bytes\n`,
  );
  console.log('| function | bytes per reading |\n|---|---|');
  for (const [fn, size] of [...byFn].sort((a, b) => b[1] - a[1]).slice(0, 25))
    console.log(`| ${fn} | ${(size / COUNT).toFixed(1)} |`);
  await app.stop();
} finally {
  await influx.stop();
}
