import { parseBuildingSegment } from '../ingest/building.js';

// Who may do what (contract section 9). Pure functions over a principal.

export type Role = 'sensor' | 'dashboard' | 'admin';

export interface Principal {
  readonly username: string | null;
  readonly role: Role;
  /** a sensor's own building; null: any */
  readonly buildingId: number | null;
  readonly anonymous: boolean;
}

export type Verdict = { ok: true } | { ok: false; reason: string };

const OK: Verdict = { ok: true };
const no = (reason: string): Verdict => ({ ok: false, reason });

export function canPublish(who: Principal, topic: string): Verdict {
  // only the daemon publishes alerts (it does so without a client)
  if (topic === 'alerts' || topic.startsWith('alerts/')) return no('only the daemon publishes to alerts/#');
  // [MQTT-4.7.2]: $ topics are the server's. Aedes acts on them: a message on
  // $SYS/{another broker}/new/clients closes the client it names (issue 12.2).
  if (topic.startsWith('$')) return no("$ topics are the broker's");
  if (who.role === 'admin') return OK;
  if (who.role === 'dashboard') return no('dashboards publish nothing');
  if (!topic.startsWith('sensors/')) return no('sensors publish only to sensors/{building}/#');
  if (who.buildingId === null) return OK;
  // the segment after "sensors/", without splitting the whole topic (asked for every publish)
  const end = topic.indexOf('/', 8);
  const segment = end < 0 ? topic.slice(8) : topic.slice(8, end);
  return parseBuildingSegment(segment) === who.buildingId
    ? OK
    : no(`sensor of building ${who.buildingId} publishing under ${segment}`);
}

export function canSubscribe(who: Principal, filter: string): Verdict {
  if (who.role === 'admin') return OK;
  if (filter.startsWith('$SYS')) return no('$SYS/# is for admins');
  if (who.role === 'sensor') return no('sensors subscribe to nothing');
  // a dashboard's filter must stay inside alerts/# or sensors/#
  const first = filter.split('/')[0];
  return first === 'alerts' || first === 'sensors'
    ? OK
    : no('dashboards subscribe to alerts/# and sensors/# only');
}

/**
 * May this principal receive a message on `topic` (Aedes's authorizeForward,
 * live and queued deliveries alike)? The rights of canSubscribe, for one topic
 * name: a filter it may subscribe to never matches a topic it may not read.
 * Runs once per delivery, so it allocates nothing.
 */
export function canRead(who: Principal, topic: string): boolean {
  if (who.role === 'admin') return true;
  if (who.role !== 'dashboard') return false;
  return (
    topic.startsWith('sensors/') || topic.startsWith('alerts/') || topic === 'sensors' || topic === 'alerts'
  );
}

/** contract: users.role 'admin' → admin, any other → dashboard; mqtt_devices.role as stored. */
export function roleOf(stored: string | null | undefined, table: 'devices' | 'users'): Role {
  if (table === 'users') return stored === 'admin' ? 'admin' : 'dashboard';
  return stored === 'admin' || stored === 'dashboard' ? stored : 'sensor';
}
