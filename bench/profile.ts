import { mkdtempSync, readdirSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startInflux1 } from '../tests/helpers/services.js';
import { report } from './cpuprofile.js';
import { bareRun, daemonRun } from './fixedLoad.js';

// `npm run bench:profile`: where each microsecond of a reading goes (issue 15).
// The fixed load of bench/fixedLoad.ts (PROFILE_QOS 0|1, PROFILE_S seconds,
// PROFILE_ROOMS: 50 → 20,000 readings/s) into bare Aedes and into the daemon
// → InfluxDB 1.x, each under --cpu-prof; prints CPU µs per reading for both
// and each one's self time per reading by where the code lives
// (PROFILE_ONLY=daemon|bare, PROFILE_KEEP=1 keeps the .cpuprofile files).

const load = {
  qos: (process.env.PROFILE_QOS === '1' ? 1 : 0) as 0 | 1,
  seconds: Number(process.env.PROFILE_S ?? 15),
  rooms: Number(process.env.PROFILE_ROOMS ?? 50),
};
const only = process.env.PROFILE_ONLY;
const influx = only === 'bare' ? null : await startInflux1();
try {
  for (const which of ['bare', 'daemon'] as const) {
    if (only && only !== which) continue;
    const dir = mkdtempSync(join(tmpdir(), `prof-${which}-`));
    const o = { ...load, cpuProfDir: dir };
    const m = which === 'bare' ? await bareRun(o) : await daemonRun(influx!.url, o);
    const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
    // written synchronously: the services helper may end the process right after
    if (file) writeSync(1, report(which === 'bare' ? 'bare Aedes' : 'daemon', join(dir, file), m));
    if (!process.env.PROFILE_KEEP) rmSync(dir, { recursive: true, force: true });
    else console.log(`profile kept in ${dir}`);
  }
} finally {
  await influx?.stop();
}
