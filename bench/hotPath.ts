import type { InboundPublish } from '../src/broker/ingress.js';
import { startInflux1 } from '../tests/helpers/services.js';
import { startInProcess } from './inProcess.js';

// `npm run bench:hotpath`: the daemon's own cost per reading, without the
// broker. The real daemon runs in this process (embedded defaults, a
// throwaway InfluxDB 1.x as its sink); HOT_COUNT publishes shaped like the
// simulator's ({"value","unit","timestamp"} over 4,000 topics) are handed to
// the ingress exactly as Aedes hands them (authorizePublish), HOT_CHUNK per
// event-loop turn, and this process's CPU time (process.cpuUsage) is counted
// until every point is written. What it leaves out is Aedes and MQTT parsing
// (bench/profile.ts measures those beside it). Run with --cpu-prof for the
// breakdown.

const COUNT = Number(process.env.HOT_COUNT ?? 400_000);
const CHUNK = Number(process.env.HOT_CHUNK ?? 200);
const QOS = Number(process.env.HOT_QOS ?? 0) as 0 | 1;
const ROUNDS = Number(process.env.HOT_ROUNDS ?? 3);

const influx = await startInflux1();
try {
  const { app, ingress } = await startInProcess(influx.url, 'hotpath');
  const topics: string[] = [];
  const units = ['°C', '%', 'W', 'ppm'];
  const types = ['temperature', 'humidity', 'power', 'co2'];
  for (let b = 1; b <= 10; b++)
    for (let f = 1; f <= 10; f++)
      for (let r = 1; r <= 10; r++)
        for (const t of types)
          topics.push(`sensors/building_${String(b).padStart(3, '0')}/${f}/room_${r}/${t}`);
  const written = () => app.metrics.pointsWritten.get();
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  const makePacket = (n: number, now: number): InboundPublish => {
    const idx = n % topics.length;
    // new strings and Buffers each time, as the MQTT parser makes them
    const topic = `${topics[idx]}`;
    const payload = Buffer.from(
      JSON.stringify({
        value: Math.round(Math.random() * 10000) / 100,
        unit: units[idx % 4],
        timestamp: now,
      }),
    );
    return { topic, payload, qos: QOS };
  };
  // the generator's own cost, subtracted below
  let sink = 0;
  const g0 = process.cpuUsage();
  for (let n = 0; n < COUNT; n++) sink += makePacket(n, Date.now()).payload.length;
  const g = process.cpuUsage(g0);
  const genUs = (g.user + g.system) / COUNT;
  console.log(JSON.stringify({ generator_us_per_packet: Math.round(genUs * 100) / 100, bytes: sink }));

  for (let round = 1; round <= ROUNDS; round++) {
    const before = written();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    let sent = 0;
    let acked = 0;
    const done = () => {
      acked++;
    };
    while (sent < COUNT) {
      const now = Date.now();
      for (let i = 0; i < CHUNK && sent < COUNT; i++, sent++) {
        ingress.authorizePublish(null, makePacket(sent, now), done);
      }
      // one event-loop turn per chunk, as Aedes reads a socket
      await new Promise((r) => setImmediate(r));
      // the publishers' window: at most 20 chunks unacknowledged (admission holds callbacks)
      while (sent - acked > CHUNK * 20) await new Promise((r) => setImmediate(r));
    }
    const deadline = performance.now() + 60_000;
    while (written() - before < COUNT && performance.now() < deadline) await sleep(5);
    const cpu = process.cpuUsage(cpu0);
    const secs = (performance.now() - t0) / 1000;
    const us = (cpu.user + cpu.system) / COUNT - genUs;
    console.log(
      JSON.stringify({
        round,
        qos: QOS,
        readings: written() - before,
        readings_per_s: Math.round(COUNT / secs),
        // minus the generator's cost per packet
        cpu_us_per_reading: Math.round(us * 100) / 100,
        user_us: Math.round((cpu.user / COUNT) * 100) / 100,
        system_us: Math.round((cpu.system / COUNT) * 100) / 100,
      }),
    );
  }
  await app.stop();
} finally {
  await influx.stop();
}
