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
      const r =
        !packet.clientId && packet.clean === false
          ? { returnCode: 2 as const, reason: 'a persistent session needs a client id' }
          : admit(client, packet);
      if (r) refused.set(client, r);
      callback(null, true);
    },
    authenticate(client, username, password, done) {
      const r = refused.get(client);
      if (r) {
        done(
          Object.assign(new Error(r.reason), { returnCode: r.returnCode }) as Parameters<typeof done>[0],
          false,
        );
        return;
      }
      authenticate(client, username, password, done);
    },
  };
}

type Deliver = (packet: { brokerId?: string | null; brokerCounter?: number }, cb: () => void) => void;

/**
 * Aedes drops a message when a newer one reached the client first: its
 * per-client dedupe (meant for overlapping subscriptions, which deliver the
 * same packet twice) keeps only the highest broker counter seen, so a
 * retained publish, which waits for the retained store, loses to any later
 * publish that overtakes it (moscajs/aedes#955, #994; measured: ~0.5% of the
 * alert events a dashboard should get under load). This keeps the dedupe for
 * real duplicates (the same counter again) and lets reordered packets through.
 * Returns false when the Aedes internals it relies on are missing.
 */
export function keepReorderedDeliveries(client: Client, remember = 4096): boolean {
  const c = client as unknown as {
    deliver0?: Deliver;
    deliverQoS?: Deliver;
    duplicates?: Record<string, number>;
  };
  if (typeof c.deliver0 !== 'function' || typeof c.deliverQoS !== 'function' || !c.duplicates) return false;
  const duplicates = c.duplicates;
  const recent = new Set<string>();
  const wrap =
    (deliver: Deliver): Deliver =>
    (packet, cb) => {
      const id = packet.brokerId;
      const n = packet.brokerCounter;
      if (id && typeof n === 'number') {
        const key = `${id}:${n}`;
        if (recent.has(key)) duplicates[id] = Math.max(duplicates[id] ?? 0, n);
        else {
          recent.add(key);
          if (recent.size > remember) recent.delete(recent.values().next().value!);
          duplicates[id] = n - 1;
        }
      }
      deliver(packet, cb);
    };
  c.deliver0 = wrap(c.deliver0);
  c.deliverQoS = wrap(c.deliverQoS);
  return true;
}
