import type { Principal } from './acl.js';

// Client ids belong to the login that created the session (issue 12, item 2).
//
// MQTT lets a CONNECT with an id in use close the connected client and take
// over (clean session 0) or wipe (clean session 1) its session
// [MQTT-3.1.4-2]. Aedes does so for any authenticated client: a sensor that
// knew a dashboard's client id received the dashboard's queued messages for
// another building, and anyone could disconnect anyone. Here a client id is
// bound to the principal that holds it; a CONNECT by another principal is
// refused with CONNACK 0x02 (identifier rejected: the id is well formed but
// not allowed for this login; 0x05 would tell the client its credentials are
// wrong), before Aedes touches the session. The same principal may take its
// own id over, as MQTT requires.
//
// A principal is the login's user name: a device that logs in with a password
// or with a certificate naming it is the same principal, and so is a Redis
// session for that user name. Anonymous clients (the loopback zero-config
// mode) are all one principal, "anonymous", and may take over each other's ids
// as before: nothing distinguishes them.
//
// A binding lasts as long as what it protects: while a client holding the id
// is connected, and after a persistent session's client is gone until the
// session expires or is found to hold no subscriptions (nothing to take).
// So the map holds at most one entry per connection plus one per stored
// persistent session (mqtt.maxPersistentSessions).

/** The identity a client id is bound to. */
export function principalKey(who: Principal): string {
  // user names are compared as given; the prefix keeps "anonymous" from meaning a user of that name
  return who.anonymous || who.username === null ? 'anonymous' : `user:${who.username}`;
}

interface Binding<C> {
  owner: string;
  /** the client that holds the id now; null: a persistent session whose client is gone */
  client: C | null;
  /** the session outlives the connection (clean session 0) */
  persistent: boolean;
}

export class SessionOwners<C extends object> {
  private readonly bindings = new Map<string, Binding<C>>();

  get size(): number {
    return this.bindings.size;
  }

  /** The principal holding this client id, if any. */
  ownerOf(clientId: string): string | undefined {
    return this.bindings.get(clientId)?.owner;
  }

  /**
   * Bind `clientId` to `owner` for `client`, unless another principal holds it.
   * Call once the client is authenticated, before Aedes registers it (takeover).
   */
  claim(clientId: string, owner: string, client: C, persistent: boolean): boolean {
    const b = this.bindings.get(clientId);
    if (b && b.owner !== owner) return false;
    this.bindings.set(clientId, { owner, client, persistent });
    return true;
  }

  /**
   * A client's connection ended. A clean session ends with it; a persistent
   * one stays bound until `forget` (expiry, or no subscriptions to protect).
   * Returns true when the binding was kept for a persistent session.
   */
  release(clientId: string, client: C): boolean {
    const b = this.bindings.get(clientId);
    // another connection took the id over meanwhile: the binding is its
    if (!b || b.client !== client) return false;
    if (!b.persistent) {
      this.bindings.delete(clientId);
      return false;
    }
    b.client = null;
    return true;
  }

  /** Drop a persistent session's binding, unless a client holds the id again. */
  forget(clientId: string): void {
    const b = this.bindings.get(clientId);
    if (b && b.client === null) this.bindings.delete(clientId);
  }
}
