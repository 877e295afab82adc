import { readFileSync } from 'node:fs';

// A V8 .cpuprofile (node --cpu-prof) summarised as self time per reading, by
// where the code lives (our rooms, each package, node internals, the GC) and
// by function. `node dist/bench/cpuprofile.js FILE [µs-per-reading readings]`
// prints it for any profile (e.g. of bench/hotPath.ts).

const TOP = Number(process.env.PROFILE_TOP ?? 40);

export interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

/** Self time (µs) per profile node, from the samples and their time deltas. */
function selfTimes(
  prof: { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[]; endTime: number; startTime: number },
  windowUs: number,
): Map<ProfileNode, number> {
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const out = new Map<ProfileNode, number>();
  // only the last windowUs of the profile: the load and the shutdown, not the start-up
  const from = prof.endTime - windowUs;
  let t = prof.startTime;
  for (let i = 0; i < prof.samples.length; i++) {
    t += prof.timeDeltas[i] ?? 0;
    if (t < from) continue;
    const n = byId.get(prof.samples[i]!)!;
    // timeDeltas[i + 1] is the time spent in sample i (the next delta)
    out.set(n, (out.get(n) ?? 0) + (prof.timeDeltas[i + 1] ?? 0));
  }
  return out;
}

function place(n: ProfileNode): string {
  const { url, functionName } = n.callFrame;
  if (!url) return functionName || '(anonymous native)';
  const mod = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (mod) return mod[1]!;
  const ours = /dist\/(src\/[^/]+|simulators)/.exec(url);
  if (ours) return ours[1]!.replace(/\.js$/, '');
  if (url.startsWith('node:'))
    return url
      .replace(/^node:internal\//, 'node:')
      .split('/')
      .slice(0, 2)
      .join('/');
  return url;
}

export interface Measured {
  readings: number;
  /** offered (sent by the simulator); readings is what was stored or received */
  sent?: number;
  cpuUsPerReading: number;
  peakRssMb?: number;
  /** wall time from the load's start to the stop signal */
  windowUs: number;
}

/**
 * Profile samples are wall-clock intervals (on a shared machine a descheduled
 * process keeps "spending" time in whatever it was running), so the table
 * gives each place's share of the samples times the CPU per reading /proc
 * measured over the same run.
 */
export function report(title: string, file: string, m: Measured): string {
  const prof = JSON.parse(readFileSync(file, 'utf8'));
  const self = selfTimes(prof, m.windowUs + 2_000_000);
  const byPlace = new Map<string, number>();
  const byFn = new Map<string, number>();
  let total = 0;
  for (const [n, us] of self) {
    if (n.callFrame.functionName === '(idle)') continue;
    total += us;
    const p = place(n);
    byPlace.set(p, (byPlace.get(p) ?? 0) + us);
    const f = `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.replace(/.*\/(node_modules|dist)\//, '')}:${n.callFrame.lineNumber + 1}`;
    byFn.set(f, (byFn.get(f) ?? 0) + us);
  }
  const per = (us: number) => ((us / total) * m.cpuUsPerReading).toFixed(2);
  let out = `\n## ${title}: ${m.cpuUsPerReading.toFixed(1)} µs CPU per reading (${m.readings} readings)\n\n`;
  out += '| where | µs per reading | share |\n|---|---|---|\n';
  for (const [p, us] of [...byPlace].sort((a, b) => b[1] - a[1]).slice(0, TOP))
    out += `| ${p} | ${per(us)} | ${((us / total) * 100).toFixed(1)}% |\n`;
  out += '\n| function (self time) | µs per reading |\n|---|---|\n';
  for (const [f, us] of [...byFn].sort((a, b) => b[1] - a[1]).slice(0, TOP)) out += `| ${f} | ${per(us)} |\n`;
  return out;
}

if (process.argv[1]?.endsWith('cpuprofile.js') && process.argv[2]) {
  const [file, us, n] = process.argv.slice(2);
  process.stdout.write(
    report('profile', file!, {
      readings: Number(n ?? 1),
      cpuUsPerReading: Number(us ?? 1),
      windowUs: Number.POSITIVE_INFINITY,
    }),
  );
}
