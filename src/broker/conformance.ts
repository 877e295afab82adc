import type { AedesOptions, Client } from 'aedes';

// Corrections to Aedes where it deviates from MQTT 3.1.1 and a hook can fix it
// (each one has a test in tests/e2e/mqtt-conformance.test.ts):
//
// [MQTT-3.1.3-8] A zero-byte ClientId with CleanSession=0 must be answered with
// CONNACK 0x02 (identifier rejected) and the connection closed. Aedes 1.2
// invents an id and accepts, giving the client a persistent session it can
// never resume. preConnect sees the packet; authenticate can answer with a
// return code, so the first marks the client and the second refuses it.

const IDENTIFIER_REJECTED = 2;

export function conformanceHooks(
  authenticate: NonNullable<AedesOptions['authenticate']>,
): Pick<AedesOptions, 'preConnect' | 'authenticate'> {
  const anonymousPersistent = new WeakSet<Client>();
  return {
    preConnect(client, packet, callback) {
      if (!packet.clientId && packet.clean === false) anonymousPersistent.add(client);
      callback(null, true);
    },
    authenticate(client, username, password, done) {
      if (anonymousPersistent.has(client)) {
        const err = Object.assign(new Error('a persistent session needs a client id'), {
          returnCode: IDENTIFIER_REJECTED,
        });
        done(err as Parameters<typeof done>[0], false);
        return;
      }
      authenticate(client, username, password, done);
    },
  };
}
