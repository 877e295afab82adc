import mqtt, { type IClientOptions, type IPublishPacket, type MqttClient, type Packet } from 'mqtt';
import type { Logger } from 'pino';
import type { InboundPublish } from '../broker/ingress.js';
import { RateLimitedLog } from '../log.js';
import { redactText, redactUrl } from '../redact.js';

// One subscriber connection to the upstream broker (contract section 15).
//
// The acknowledgement: MQTT.js answers a QoS 1 PUBLISH from inside its packet
// handler: handlePublish → client.handleMessage(packet, cb) → cb() sends the
// PUBACK through client._sendPacket(puback, done), and `done` lets it parse the
// next packet of the connection. Holding cb until the log's fsync would keep a
// single message in flight per connection (measured: one fsync per message).
// So cb is called at once and the PUBACK it produces is caught on its way out
// (_sendPacket) and held in a FIFO: PUBACKs leave in the order the PUBLISHes
// came (MQTT-4.6.0-2), each once its record is durable, while up to
// upstream.maxInflight messages of this connection share one group commit.
// At that window the `done` continuation is held: MQTT.js stops reading the
// socket and TCP pushes back on the broker. Nothing is ever answered with an
// error reason code (the broker would treat it as final and drop the message):
// when ingestion fails the connection is dropped instead, and the broker
// sends the unacknowledged messages again.

/** the one ingress point (src/broker/ingress.ts), shared with the embedded broker */
export interface UpstreamIngress {
  receive(msg: InboundPublish, clientId: string | null): Promise<unknown> | undefined;
}

export interface UpstreamConnectionOptions {
  readonly index: number;
  readonly url: string;
  readonly clientId: string;
  readonly topics: readonly string[];
  readonly shareGroup: string;
  readonly username?: string;
  readonly password?: string;
  readonly protocolVersion: 4 | 5;
  readonly maxInflight: number;
  readonly sessionExpirySeconds: number;
  readonly reconnectMinMs: number;
  readonly reconnectMaxMs: number;
  readonly tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer };
  readonly ingress: UpstreamIngress;
  readonly log: Logger;
  /** after every CONNACK (alert state is republished on connection 0) */
  readonly onConnect?: () => void;
}

interface PendingAck {
  ready: boolean;
  /** the PUBACK MQTT.js built, caught in _sendPacket */
  packet: Packet | null;
}

type SendPacket = (packet: Packet, cb?: (err?: Error) => void, ...rest: unknown[]) => void;

/** reconnect attempts at upstream.reconnectMinMs before the delay starts doubling */
const FAST_ATTEMPTS = 10;

export function subscriptionFilters(topics: readonly string[], shareGroup: string): string[] {
  return topics.map((t) => (shareGroup ? `$share/${shareGroup}/${t}` : t));
}

export class UpstreamConnection {
  readonly client: MqttClient;
  connected = false;
  subscribed = false;
  /** counters read at scrape time (a label lookup per message would cost more than the message) */
  messages = 0;
  acks = 0;
  connects = 0;
  disconnects = 0;
  failures = 0;
  private readonly pending: PendingAck[] = [];
  /** set between handleMessage calling MQTT.js's cb and that cb reaching _sendPacket */
  private capturing: PendingAck | null = null;
  /** MQTT.js's continuation (parse the next packet), held while the window is full */
  private heldDone: (() => void) | null = null;
  /** bumped on every disconnect: acks of an earlier connection are never sent on a later one */
  private generation = 0;
  private stopping = false;
  /** after a failed message, until the next CONNACK: nothing more is taken from the closing connection */
  private dropping = false;
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private readonly sendPacket: SendPacket;
  private readonly warnings: RateLimitedLog;
  private readonly dlClientId: string;
  lastError: string | null = null;

  constructor(private readonly opts: UpstreamConnectionOptions) {
    this.warnings = new RateLimitedLog(opts.log);
    this.dlClientId = `upstream:${opts.clientId}`;
    const options: IClientOptions = {
      clientId: opts.clientId,
      protocolVersion: opts.protocolVersion,
      // persistent session: the broker keeps our subscription and queues for us while we are away
      clean: false,
      username: opts.username,
      password: opts.password,
      keepalive: 30,
      connectTimeout: 10_000,
      // reconnects are ours (backoff with jitter); MQTT.js's own timer has a fixed period
      reconnectPeriod: 0,
      // subscribed again on every CONNACK by us (to know when it is granted)
      resubscribe: false,
      ...(opts.protocolVersion === 5
        ? {
            properties: {
              sessionExpiryInterval: opts.sessionExpirySeconds,
              receiveMaximum: Math.min(opts.maxInflight, 65535),
            },
          }
        : {}),
      ...(opts.tls ?? {}),
    };
    this.client = mqtt.connect(opts.url, options);
    const client = this.client as unknown as {
      _sendPacket: SendPacket;
      handleMessage: (packet: IPublishPacket, cb: (err?: Error) => void) => void;
    };
    this.sendPacket = client._sendPacket.bind(this.client);
    client._sendPacket = (packet, cb, ...rest) => {
      const entry = this.capturing;
      if (packet.cmd === 'puback' && entry) {
        this.capturing = null;
        entry.packet = packet;
        this.flush();
        // MQTT.js may read the next packet unless the window is full
        if (cb) {
          if (this.pending.length < this.opts.maxInflight) cb();
          else this.heldDone = () => cb();
        }
        return;
      }
      this.sendPacket(packet, cb, ...rest);
    };
    client.handleMessage = (packet, cb) => this.onMessage(packet, cb);
    this.client.on('connect', (connack) => this.onConnect(connack.sessionPresent));
    this.client.on('close', () => this.onClose());
    this.client.on('error', (err) => {
      this.lastError = redactText(err.message);
      this.warnings.warn(
        `upstream-error-${opts.index}`,
        { connection: opts.index, broker: redactUrl(opts.url), err: this.lastError },
        'upstream broker connection error',
      );
    });
  }

  get inflight(): number {
    return this.pending.length;
  }

  private onMessage(packet: IPublishPacket, cb: (err?: Error) => void): void {
    // neither ingested nor acknowledged: the broker sends it again later
    if (this.stopping || this.dropping) return;
    this.messages++;
    const msg: InboundPublish = {
      topic: packet.topic,
      payload: Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload),
      qos: packet.qos,
    };
    let wait: Promise<unknown> | undefined;
    try {
      wait = this.opts.ingress.receive(msg, this.dlClientId);
    } catch (err) {
      this.fail(err);
      return;
    }
    if (packet.qos !== 1) {
      // QoS 0 has no acknowledgement: the wait is backpressure (admission), the socket is read later.
      // QoS 2 (not asked for: we subscribe at QoS 1) keeps MQTT.js's own one-at-a-time handling.
      if (wait)
        wait.then(
          () => cb(),
          (err) => this.fail(err),
        );
      else cb();
      return;
    }
    const entry: PendingAck = { ready: wait === undefined, packet: null };
    this.pending.push(entry);
    const generation = this.generation;
    if (wait)
      wait.then(
        () => {
          if (generation !== this.generation) return;
          entry.ready = true;
          this.flush();
        },
        (err) => {
          if (generation === this.generation) this.fail(err);
        },
      );
    this.capturing = entry;
    cb(); // → _sendPacket(puback): caught above
    this.capturing = null;
  }

  /** PUBACKs leave in arrival order, each once its record (and all before it) is durable */
  private flush(): void {
    const { pending } = this;
    while (pending.length && pending[0]!.ready && pending[0]!.packet) {
      const p = pending.shift()!;
      this.acks++;
      this.sendPacket(p.packet!, () => {});
    }
    if (this.heldDone && pending.length < this.opts.maxInflight) {
      const done = this.heldDone;
      this.heldDone = null;
      done();
    }
  }

  /** ingestion failed (a bug, an I/O error the log could not absorb): nothing is acknowledged, the broker resends */
  private fail(err: unknown): void {
    this.failures++;
    this.opts.log.error(
      { err, connection: this.opts.index },
      'upstream message could not be ingested; reconnecting so the broker sends it again',
    );
    this.reset();
    // end, not destroy: the PUBACKs already written (durable records before this one) still leave
    this.dropping = true;
    const stream = this.client.stream;
    stream?.end();
    setTimeout(() => stream?.destroy(), 1000).unref();
  }

  private reset(): void {
    this.generation++;
    this.pending.length = 0;
    this.heldDone = null;
    this.capturing = null;
  }

  private onConnect(sessionPresent: boolean): void {
    this.connected = true;
    this.dropping = false;
    this.connects++;
    this.attempt = 0;
    this.lastError = null;
    this.opts.log.info(
      { connection: this.opts.index, clientId: this.opts.clientId, sessionPresent },
      'connected to the upstream broker',
    );
    const filters = subscriptionFilters(this.opts.topics, this.opts.shareGroup);
    const generation = this.generation;
    this.client.subscribe(
      Object.fromEntries(filters.map((f) => [f, { qos: 1 as const }])),
      (err, granted) => {
        if (generation !== this.generation) return;
        const refused = (granted ?? []).filter((g) => g.qos > 2);
        if (err || refused.length) {
          this.subscribed = false;
          this.lastError = err
            ? redactText(err.message)
            : `subscription refused: ${refused.map((g) => g.topic).join(', ')}`;
          this.opts.log.error(
            { connection: this.opts.index, error: this.lastError },
            'upstream subscription failed (check the broker ACL for this user)',
          );
          return;
        }
        this.subscribed = true;
      },
    );
    this.opts.onConnect?.();
  }

  private onClose(): void {
    if (this.connected && !this.stopping) {
      this.disconnects++;
      this.opts.log.warn({ connection: this.opts.index }, 'upstream broker connection lost; reconnecting');
    }
    this.connected = false;
    this.subscribed = false;
    // the broker sends every unacknowledged message again on the next connection (persistent session)
    this.reset();
    if (this.stopping || this.reconnectTimer) return;
    // The first attempts come quickly, then back off: a broker that restarts (an upgrade, a crash) is
    // usually back within seconds, and Mosquitto 2.0 does not restore $share subscriptions, so what
    // sensors publish before we have subscribed again is dropped; we want to be back before they are.
    const doublings = Math.min(Math.max(0, this.attempt - FAST_ATTEMPTS), 20);
    const base = Math.min(this.opts.reconnectMaxMs, this.opts.reconnectMinMs * 2 ** doublings);
    this.attempt++;
    const delay = Math.round(base / 2 + (Math.random() * base) / 2);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this.stopping) return;
      // keep the stores: alert publishes queued while offline go out after the CONNACK
      this.client.reconnect({
        incomingStore: this.client.incomingStore,
        outgoingStore: this.client.outgoingStore,
      });
    }, delay);
    this.reconnectTimer.unref();
  }

  /**
   * Stop taking messages, send the PUBACKs of what is already durable (until the deadline), then
   * disconnect. What was not acknowledged stays with the broker for the next start.
   */
  async stop(deadline: number): Promise<void> {
    this.stopping = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    while (this.pending.length && this.connected && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => this.client.end(true, () => resolve()), Math.max(0, deadline - Date.now()));
      t.unref();
      this.client.end(false, () => {
        clearTimeout(t);
        resolve();
      });
    });
  }
}
