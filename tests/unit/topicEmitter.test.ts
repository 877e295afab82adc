import fc from 'fast-check';
import mqemitter from 'mqemitter';
import { describe, expect, it } from 'vitest';
import { createTopicEmitter } from '../../src/broker/topicEmitter.js';

type Emitter = ReturnType<typeof mqemitter>;

const tick = () => new Promise((r) => setImmediate(r));

/** the topics each listener received for `topics`, in order */
async function deliveries(mq: Emitter, filters: string[], topics: string[]): Promise<string[]> {
  const got: string[] = [];
  for (const [i, f] of filters.entries())
    mq.on(f, (m, done) => {
      got.push(`${i}:${m.topic}`);
      done();
    });
  for (const t of topics) await new Promise<void>((r) => mq.emit({ topic: t }, () => r()));
  return got;
}

describe("the broker's message emitter (issue 15: no trie walk for topics nobody can match)", () => {
  it('finishes a message no filter can match at once, and delivers the rest as before', async () => {
    const mq = createTopicEmitter();
    let finished = false;
    mq.emit({ topic: 'sensors/building_001/1/r/power' }, () => {
      finished = true;
    });
    expect(finished).toBe(true); // synchronously, as mqemitter does without listeners
    expect(mq.skipped).toBe(1);

    const got: string[] = [];
    const alerts = (m: { topic: string }, done: () => void) => {
      got.push(m.topic);
      done();
    };
    mq.on('alerts/#', alerts);
    await deliveries(mq, [], ['sensors/b/1/r/power', 'alerts/x']);
    expect(got).toEqual(['alerts/x']);
    expect(mq.skipped).toBe(2);

    // a wildcard first level can match anything: every message takes the trie
    const all: string[] = [];
    const any = (m: { topic: string }, done: () => void) => {
      all.push(m.topic);
      done();
    };
    mq.on('+/b/#', any);
    await deliveries(mq, [], ['sensors/b/1', 'other/c']);
    expect(all).toEqual(['sensors/b/1']);
    expect(mq.skipped).toBe(2);

    // removal is deferred by mqemitter; once done, the shortcut is back
    mq.removeListener('+/b/#', any);
    await tick();
    await deliveries(mq, [], ['sensors/b/2']);
    expect(mq.skipped).toBe(3);
    mq.removeListener('alerts/#', alerts);
    await tick();
  });

  it('delivers exactly what a plain mqemitter delivers, for any filters and topics (property)', async () => {
    const word = fc.constantFrom('sensors', 'alerts', '$SYS', 'a', '', 'sensors2', 'b');
    // MQTT has no empty topic or filter; empty levels it has
    const topic = fc
      .array(word, { minLength: 1, maxLength: 4 })
      .map((w) => w.join('/'))
      .filter((t) => t !== '');
    const level = fc.constantFrom('sensors', 'alerts', '$SYS', 'a', '', '+', 'b');
    const filter = fc
      .tuple(fc.array(level, { minLength: 1, maxLength: 3 }), fc.boolean())
      .map(([w, some]) => (some ? [...w, '#'] : w).join('/'))
      .filter((f) => f !== '')
      .chain((f) => fc.constantFrom(f, '#'));
    await fc.assert(
      fc.asyncProperty(
        fc.array(filter, { maxLength: 4 }),
        fc.array(topic, { minLength: 1, maxLength: 8 }),
        async (filters, topics) => {
          const ours = createTopicEmitter();
          const plain = mqemitter({ concurrency: 100, matchEmptyLevels: true });
          expect(await deliveries(ours, filters, topics)).toEqual(await deliveries(plain, filters, topics));
        },
      ),
      { numRuns: 500 },
    );
  });
});
