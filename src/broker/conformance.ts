import type { AedesOptions, Client, ConnectPacket } from 'aedes';

// Connect-time refusals that must be answered with a CONNACK return code.
// preConnect sees the CONNECT packet but cannot answer with a code; authenticate
// can. So preConnect decides and marks the client, authenticate answers.
//
// Conformance: [MQTT-3.1.3-8] a zero-byte ClientId with CleanSession=0 gets
// CONNACK 0x02 and the connection is closed. Aedes 1.2 invents an id and
// accepts, giving the client a persistent session it can never resume
// (test in tests/e2e/mqtt-conformance.test.ts).

export interface Refusal {
  /** 2: identifier rejected, 3: server unavailable, 5: not authorized */
  readonly returnCode: 2 | 3 | 5;
  readonly reason: string;
}

/** Extra admission checks (limits); undefined admits the client. */
export type Admit = (client: Client, packet: ConnectPacket) => Refusal | undefined;

export function connectHooks(
  authenticate: NonNullable<AedesOptions['authenticate']>,
  admit: Admit = () => undefined,
): Pick<AedesOptions, 'preConnect' | 'authenticate'> {
  const refused = new WeakMap<Client, Refusal>();
  return {
    preConnect(client, packet, callback) {
      // Aedes authenticates one setImmediate after handling CONNECT and only
      // pauses the client then; bytes read in between were handled at once,
      // before authentication (a SUBSCRIBE got SUBACK 0x80 before the CONNACK).
      // Pausing here closes that window: Aedes resumes after the CONNACK, and
      // the queued packets are handled as the authenticated client [MQTT-3.1.4-5].
      (client as unknown as { pause(): void }).pause();
      const r =
        !packet.clientId && packet.clean === false
          ? { returnCode: 2 as const, reason: 'a persistent session needs a client id' }
          : admit(client, packet);
      if (r) refused.set(client, r);
      callback(null, true);
    },
    authenticate(client, username, password, done) {
      // A refused CONNECT never held its client id, but Aedes closes it like
      // any client, and with clean session 1 that cleans the id's inbound QoS 2
      // state [MQTT-3.1.2-6], which is its holder's: their retransmitted
      // PUBLISH would be delivered twice (issue 12.2). A refused client is
      // closed as a persistent one: it has no session to clean.
      const answer: typeof done = (err, ok) => {
        if (err || !ok) (client as { clean: boolean }).clean = false;
        done(err, ok);
      };
      const r = refused.get(client);
      if (r) {
        answer(
          Object.assign(new Error(r.reason), { returnCode: r.returnCode }) as Parameters<typeof done>[0],
          false,
        );
        return;
      }
      authenticate(client, username, password, answer);
    },
  };
}

type Deliver = (
  packet: { brokerId?: string | null; brokerCounter?: number; qos?: number; topic?: string },
  cb: () => void,
) => void;

/**
 * Per-client delivery corrections, each measured against Aedes 1.2:
 *
 * 1. Reordered deliveries. Aedes drops a message when a newer one reached the
 *    client first: its per-client dedupe (meant for overlapping subscriptions,
 *    which deliver the same packet twice) keeps only the highest broker counter
 *    seen, so a retained publish, which waits for the retained store, loses to
 *    any later publish that overtakes it (moscajs/aedes#955, #994; measured:
 *    ~0.5% of the alert events a dashboard should get under load). This keeps
 *    the dedupe for real duplicates (the same counter again) and lets reordered
 *    packets through. Aedes's deliverQoS hands a QoS 0 packet on to deliver0,
 *    so only deliver0 may look at a QoS 0 packet: seen by both, it counted as
 *    its own duplicate and never reached a QoS 1/2 subscription (issue 11.1).
 * 2. QoS downgrade [MQTT-3.8.4-6]: a message goes out at the lower of its QoS
 *    and the granted QoS. Aedes looks the subscription up by the message's
 *    topic, so under any wildcard filter (and for retained messages) a QoS 2
 *    publish reached a QoS 0 or 1 subscription at QoS 2. Here the granted QoS
 *    is the highest of the client's filters that match the topic (overlapping
 *    subscriptions: the maximum, as the spec allows).
 *
 * Returns false when the Aedes internals it relies on are missing.
 */
export function keepReorderedDeliveries(client: Client, remember = 4096): boolean {
  const c = client as unknown as {
    deliver0?: Deliver;
    deliverQoS?: Deliver;
    duplicates?: Record<string, number>;
    subscriptions?: Record<string, { qos?: number }>;
  };
  if (
    typeof c.deliver0 !== 'function' ||
    typeof c.deliverQoS !== 'function' ||
    !c.duplicates ||
    !c.subscriptions
  ) {
    return false;
  }
  const duplicates = c.duplicates;
  const subscriptions = c.subscriptions;
  const recent = new Set<string>();
  const dedupe = (packet: Parameters<Deliver>[0]): void => {
    const id = packet.brokerId;
    const n = packet.brokerCounter;
    if (!id || typeof n !== 'number') return;
    const key = `${id}:${n}`;
    if (recent.has(key)) duplicates[id] = Math.max(duplicates[id] ?? 0, n);
    else {
      recent.add(key);
      if (recent.size > remember) recent.delete(recent.values().next().value!);
      duplicates[id] = n - 1;
    }
  };
  const deliver0 = c.deliver0;
  const deliverQoS = c.deliverQoS;
  c.deliver0 = (packet, cb) => {
    dedupe(packet);
    deliver0(packet, cb);
  };
  c.deliverQoS = (packet, cb) => {
    const qos = packet.qos ?? 0;
    // the common case (a dashboard's sensors/# at QoS 1 and QoS 1 readings) needs no matching
    if (qos > 0 && typeof packet.topic === 'string' && !allGrant(subscriptions, qos)) {
      const granted = grantedQoS(subscriptions, packet.topic);
      if (granted < qos) packet.qos = granted; // a per-delivery copy (Aedes's Packet), safe to change
    }
    // QoS 0 goes on to deliver0 (above), which does the dedupe bookkeeping once
    if ((packet.qos ?? 0) > 0) dedupe(packet);
    deliverQoS(packet, cb);
  };
  return true;
}

function allGrant(subscriptions: Record<string, { qos?: number }>, qos: number): boolean {
  for (const filter in subscriptions) if ((subscriptions[filter]?.qos ?? 0) < qos) return false;
  return true;
}

/** The highest QoS granted to a filter matching `topic` (2 when none matches: no downgrade). */
export function grantedQoS(subscriptions: Record<string, { qos?: number }>, topic: string): number {
  let granted = -1;
  let levels: string[] | undefined;
  for (const filter in subscriptions) {
    const q = subscriptions[filter]?.qos ?? 0;
    if (q <= granted) continue;
    if (filter !== topic) {
      levels ??= topic.split('/');
      if (!topicMatches(filter, levels)) continue;
    }
    granted = q;
    if (granted >= 2) break;
  }
  return granted < 0 ? 2 : granted;
}

/** MQTT filter matching [MQTT-4.7]: `+` one level, `#` the rest; wildcards first never match `$` topics. */
export function topicMatches(filter: string, topic: string[]): boolean {
  const f = filter.split('/');
  if ((f[0] === '#' || f[0] === '+') && topic[0]?.startsWith('$')) return false;
  for (let i = 0; i < f.length; i++) {
    const part = f[i];
    if (part === '#') return true;
    if (i >= topic.length) return false;
    if (part !== '+' && part !== topic[i]) return false;
  }
  return f.length === topic.length;
}
