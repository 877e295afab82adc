import mqemitter from 'mqemitter';

type Emitter = mqemitter.MQEmitter;

/** Aedes's own settings for its emitter (aedes.js): 100 messages in flight, `+` matches an empty level [MQTT-4.7.1-3] */
const AEDES_CONCURRENCY = 100;

export type TopicEmitter = Emitter & {
  /** messages finished without the trie walk (no filter could match them) */
  readonly skipped: number;
};

interface Internals {
  closed: boolean;
  _messageQueue: unknown[];
  /** qlobber 8: the trie's first level, one key per first word of a filter ('+' and '#' as themselves) */
  _matcher: { _trie?: unknown };
}

/**
 * Aedes's message emitter (mqemitter), with a way around the trie for topics
 * no subscription can match. Every PUBLISH goes through `emit`, which splits
 * the topic into words and walks qlobber's trie: about 290 ns per sensor
 * reading on the bench machine, while usually nobody subscribes to sensors/…
 * (issue 15). qlobber can only match a topic through the trie's first-level
 * keys `#`, `+` or the topic's first word (qlobber.js `_match`), and it
 * deletes a key when its last filter goes; so when none of the three is there
 * the walk would find nothing, and the message is finished at once, as
 * mqemitter finishes a message without listeners (the callback, synchronously).
 * The check reads the trie itself, so it can never disagree with it; should a
 * future qlobber keep its trie elsewhere, every message takes the normal path.
 */
export function createTopicEmitter(): TopicEmitter {
  const mq = mqemitter({ concurrency: AEDES_CONCURRENCY, matchEmptyLevels: true });
  const inner = mq as unknown as Internals;
  const trie = inner._matcher._trie instanceof Map ? (inner._matcher._trie as Map<string, unknown>) : null;
  let skipped = 0;
  // the first word of the last topic: almost every publish starts with "sensors/", and a
  // string already hashed is a cheaper key than a fresh slice
  let lastWord = '';

  const firstWord = (topic: string): string => {
    const n = lastWord.length;
    if (n > 0 && topic.charCodeAt(n) === 0x2f && topic.startsWith(lastWord)) return lastWord;
    const i = topic.indexOf('/');
    lastWord = i < 0 ? topic : topic.slice(0, i);
    return lastWord;
  };
  const mayMatch = (topic: string): boolean =>
    trie === null || trie.has('#') || trie.has('+') || trie.has(firstWord(topic));

  const emit = mq.emit.bind(mq);
  mq.emit = (message, callback) => {
    // with 100 messages in flight mqemitter queues: then its order is kept, and its path taken
    if (!inner.closed && inner._messageQueue.length === 0 && !mayMatch(message.topic)) {
      skipped++;
      callback?.();
      return;
    }
    emit(message, callback);
  };
  return Object.defineProperty(mq, 'skipped', { get: () => skipped }) as TopicEmitter;
}
