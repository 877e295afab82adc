import mqemitter from 'mqemitter';
import { createTopicEmitter } from '../src/broker/topicEmitter.js';

// `npm run build && node dist/bench/emitterMicro.js`: what Aedes's message
// emitter costs per sensor reading when nobody subscribes to sensors/… (the
// usual case: dashboards subscribe to alerts/…), for mqemitter as Aedes makes
// it and for the broker's emitter (src/broker/topicEmitter.ts), each with
// Aedes's three $SYS listeners and one alerts/# subscriber. ns per emit,
// median of EMIT_ROUNDS rounds; topics are fresh strings, as the MQTT parser
// makes them. Issue 15.

const N = 20_000;
const COUNT = Number(process.env.EMIT_COUNT ?? 500_000);
const ROUNDS = Number(process.env.EMIT_ROUNDS ?? 7);
const topics = Array.from({ length: N }, (_, i) =>
  Buffer.from(`sensors/building_${String(i % 50).padStart(3, '0')}/${i % 7}/room_${i}/temperature`),
);

function prepare(mq: ReturnType<typeof mqemitter>) {
  const nop = (_m: unknown, done: () => void) => done();
  for (const f of ['$SYS/+/heartbeat', '$SYS/+/birth', '$SYS/+/new/clients', 'alerts/#']) mq.on(f, nop);
  return mq;
}

function perEmit(mq: ReturnType<typeof mqemitter>): number {
  const samples: number[] = [];
  let finished = 0;
  const done = () => {
    finished++;
  };
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < COUNT; i++) mq.emit({ topic: topics[i % N]!.toString('latin1') }, done);
    samples.push(Number(process.hrtime.bigint() - t0) / COUNT);
  }
  // the topic strings alone, subtracted
  const t0 = process.hrtime.bigint();
  let len = 0;
  for (let i = 0; i < COUNT; i++) len += topics[i % N]!.toString('latin1').length;
  const strings = Number(process.hrtime.bigint() - t0) / COUNT;
  if (finished !== COUNT * ROUNDS || len === 0) throw new Error('not every emit finished');
  samples.sort((a, b) => a - b);
  return samples[samples.length >> 1]! - strings;
}

const plain = perEmit(prepare(mqemitter({ concurrency: 100, matchEmptyLevels: true })));
const ours = createTopicEmitter();
const topicEmitter = perEmit(prepare(ours));
console.log(
  JSON.stringify({
    mqemitter_ns_per_emit: Math.round(plain),
    topic_emitter_ns_per_emit: Math.round(topicEmitter),
    skipped: ours.skipped,
  }),
);
