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
