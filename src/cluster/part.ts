import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Aedes, Client, PublishPacket, Subscription } from 'aedes';
import { Redis } from 'ioredis';
import type { Component, NodeContext } from '../component.js';
import { RateLimitedLog } from '../log.js';
import { Counter, type Metrics } from '../metrics.js';
import { Outage, retryPolicy } from '../retry.js';
import { FilterView, LocalFilters } from './filters.js';
import {
  BatchWriter,
  batchHeader,
  type ClusterMessage,
  decodeBatch,
  decodeRetained,
  encodeMessage,
  encodeRetained,
} from './frame.js';

// Cross-node delivery over Redis (contract section 14, issue 14 item 2).
//
// Every node keeps its MQTT sessions, its Aedes and its durable log; what
// crosses between nodes is only what a subscriber elsewhere asked for:
//
//   cluster:node:{id}    registry entry (JSON), EX 15 s, refreshed every heartbeat
//   cluster:subs:{id}    SET of this node's subscription filters, EX 15 s, same heartbeat
//   cluster:subs         channel: "{id}" when a node's filters changed (others re-read its set)
//   cluster:msg:{id}     channel: batches of messages for node {id} (frame.ts)
//   cluster:retained     HASH topic → [qos][payload] of every retained message, and the channel
//                        that announces each retained change to every node
//
// A published message is matched against the other nodes' filters (an
// in-memory trie, filters.ts); with no remote filter at all the cost per
// message is one field read. Messages from other nodes are handed to the local
// Aedes for delivery only: they never pass the ingress (not stored again, no
// alert evaluation) and are marked so they are never forwarded again.
// Nothing here is on the sensor path's critical section: Redis down or slow
// means cross-node delivery is dropped (counted), never that a PUBACK waits.
// (mqemitter-redis and aedes-persistence-redis are not used: issue 14's pitfalls.)

const NODE_TTL_S = 15;
const KEY_NODE = (id: string) => `cluster:node:${id}`;
const KEY_SUBS = (id: string) => `cluster:subs:${id}`;
const CHANNEL_MSG = (id: string) => `cluster:msg:${id}`;
const CHANNEL_SUBS = 'cluster:subs';
const RETAINED = 'cluster:retained';
const NODE_PREFIX = 'cluster:node:';
/**
 * Messages from other nodes handed to Aedes at a time. Aedes's mqemitter runs
 * `concurrency` (100) publishes at once and queues the rest in an array it
 * shift()s one by one: a batch of thousands handed over in one go made that
 * queue long, and shift() on a long array copies it, so delivery became
 * quadratic (bench/README.md, issue 14: 200 µs CPU per delivered message on
 * the subscriber's node, 29 µs for bare Aedes). Fed this many at a time, the
 * rest wait here, where taking the next one is O(1).
 */
const INJECT_IN_FLIGHT = 32;

/**
 * HSET/HDEL of a retained message and its broadcast, atomically (so no node
 * can read the hash between the two and miss the change). Bounded: a new
 * topic beyond the limit is not stored (still delivered live, not retained).
 * KEYS[1] hash; ARGV: topic, value ('' deletes), max, retainedBatch, liveBatch, exempt
 */
const RETAIN_SCRIPT = `
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('PUBLISH', KEYS[1], ARGV[4])
  return 1
end
if ARGV[6] == '1' or redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 or redis.call('HLEN', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('PUBLISH', KEYS[1], ARGV[4])
  return 1
end
redis.call('PUBLISH', KEYS[1], ARGV[5])
return 0
`;

type ClusterRedis = Redis & {
  retainCluster(
    key: string,
    topic: string,
    value: Buffer | string,
    max: number,
    retained: Buffer,
    live: Buffer,
    exempt: string,
  ): Promise<number>;
};

export interface NodeInfo {
  readonly id: string;
  readonly mqtt: string;
  readonly http: string;
  readonly started_at: string;
  readonly last_seen: string;
  readonly connected_clients: number;
  readonly readings_per_s: number;
  readonly backlog: number;
}

export interface ClusterDeps {
  /** the local broker (started before this part) */
  aedes(): Aedes;
  /** what the registry entry says about this node */
  stats(): { mqttPort: number; httpPort: number; connectedClients: number; backlog: number };
}

/** one step of the outgoing queue: a batch per target node, or one retained change for all */
type Segment =
  | { kind: 'nodes'; batches: Map<string, BatchWriter>; bytes: number }
  | { kind: 'retained'; topic: string; message: ClusterMessage; bytes: number };

export class ClusterPart implements Component {
  readonly name = 'cluster';
  readonly check = 'cluster';
  private pub: ClusterRedis | null = null;
  private sub: Redis | null = null;
  private aedes: Aedes | null = null;
  private readonly nodeId: string;
  private readonly header: Buffer;
  private readonly remote = new FilterView();
  private readonly local = new LocalFilters();
  /** messages handed to the local Aedes from other nodes: delivered here, never forwarded again */
  private readonly injected = new WeakSet<object>();
  /** messages from other nodes waiting for the local Aedes (a queue read from `inHead`) */
  private inbound: ClusterMessage[] = [];
  private inHead = 0;
  private inboundBytes = 0;
  private injecting = 0;
  private pumping = false;
  private readonly injectDone = (err?: Error | null): void => {
    this.injecting--;
    if (err) this.rateLog.warn('cluster:inject', {}, `delivery failed: ${err.message}`);
    this.pump();
  };
  private queue: Segment[] = [];
  private queuedBytes = 0;
  private flushScheduled = false;
  private filtersDirty = false;
  private readonly outage: Outage;
  private readonly rateLog: RateLimitedLog;
  private startedAt = new Date();
  private lastAccepted = 0;
  private lastBeatAt = Date.now();
  private readingsPerS = 0;
  private registered = false;
  /** this process's registry entry, told apart from another process with the same node id */
  private readonly instance = randomUUID();
  private lastWrite = new Date().toISOString();
  private idConflicts = 0;
  private liveNodes = 0;
  private stopped = false;
  /** set when Redis was lost: the next connection re-registers and re-seeds what a restarted Redis lost */
  private reconnected = false;
  readonly forwarded = new Counter(
    'energy_ingest_cluster_forwarded_total',
    'messages sent to other nodes over Redis (one per target node)',
  );
  readonly received = new Counter(
    'energy_ingest_cluster_received_total',
    'messages from other nodes delivered to local subscribers (retained ones included)',
  );
  readonly dropped = new Counter(
    'energy_ingest_cluster_dropped_total',
    'messages not sent to (or not taken from) other nodes, by reason: redis_down, queue_full (cluster.maxQueuedBytes), inbound_full (cluster.maxQueuedBytes of messages from other nodes waiting for local delivery), redis_error, retained_limit, bad_frame',
  );

  constructor(
    private readonly ctx: NodeContext,
    private readonly deps: ClusterDeps,
  ) {
    this.nodeId = ctx.cfg.cluster.nodeId;
    this.header = batchHeader(this.nodeId);
    this.outage = new Outage(ctx.log, 'cross-node delivery over Redis');
    this.rateLog = new RateLimitedLog(ctx.log);
  }

  /** the other nodes' filters (tests, /api/status) */
  get remoteFilters(): number {
    return this.remote.size;
  }

  async start(): Promise<void> {
    const { cfg, log } = this.ctx;
    const url = cfg.redis.url!;
    this.startedAt = new Date();
    this.lastWrite = this.startedAt.toISOString();
    this.lastAccepted = this.ctx.metrics.readingsAccepted.get();
    const reconnect = retryPolicy('redisReconnect');
    const pub = new Redis(url, {
      lazyConnect: true,
      // commands fail at once while Redis is down: the forwarder drops and counts, never queues unbounded
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout: 5000,
      retryStrategy: (times) => reconnect.delayMs(times),
      connectionName: `energy-ingest:${this.nodeId}:pub`,
    }) as ClusterRedis;
    pub.defineCommand('retainCluster', { numberOfKeys: 1, lua: RETAIN_SCRIPT });
    const sub = new Redis(url, {
      lazyConnect: true,
      // ioredis#2037: CLIENT SETINFO racing SUBSCRIBE on a subscriber connection
      disableClientInfo: true,
      maxRetriesPerRequest: null,
      retryStrategy: (times) => reconnect.delayMs(times),
      connectionName: `energy-ingest:${this.nodeId}:sub`,
    });
    this.pub = pub;
    this.sub = sub;
    // a Redis error must never end the process: both connections report here and reconnect by themselves
    pub.on('error', (err) => this.lost(err));
    sub.on('error', (err) => this.lost(err));
    // A Redis that dies and is back before the first reconnect attempt (200 ms – 5 s later)
    // emits no 'error' at all, only 'close': without this its restart went unnoticed and
    // the empty Redis never got this node's retained messages back (cluster.test.ts, ~1 run in 2)
    pub.on('close', () => {
      if (!this.stopped) this.lost(new Error('Redis connection closed'));
    });
    pub.on('ready', () => {
      if (!this.reconnected) return;
      this.reconnected = false;
      this.outage.ok();
      // Redis may have restarted empty: register again, rewrite our filters and retained messages
      void this.beat().catch(() => {});
      void this.seedRetained().catch(() => {});
    });
    sub.on('ready', () => void this.resync().catch(() => {}));
    sub.on('messageBuffer', (channel: Buffer, message: Buffer) => this.onRedisMessage(channel, message));

    const aedes = this.deps.aedes();
    this.aedes = aedes;
    aedes.on('publish', this.onPublish);
    aedes.on('subscribe', this.onSubscribe);
    aedes.on('unsubscribe', this.onUnsubscribe);
    // clients that subscribed between the broker's start and this part's
    for (const c of Object.values((aedes as unknown as { clients: Record<string, Client> }).clients)) {
      const subs = (c as unknown as { subscriptions?: Record<string, unknown> }).subscriptions ?? {};
      for (const f of Object.keys(subs)) this.local.add(c.id, f);
    }

    const connected = Promise.all([pub.connect(), sub.connect()]).then(
      () => sub.subscribe(CHANNEL_MSG(this.nodeId), CHANNEL_SUBS, RETAINED),
      () => {}, // reported by the 'error' handlers
    );
    // a healthy Redis gets its moment (the cluster's retained set loaded before clients see this node
    // as ready); a dead one costs two seconds, then everything resumes in the background
    await Promise.race([connected, new Promise((r) => setTimeout(r, 2000).unref())]);
    if (pub.status === 'ready') {
      await this.loadRetained().catch((err) =>
        log.warn({ err: String(err) }, 'cluster retained set not loaded'),
      );
      await this.beat().catch(() => {});
      await this.resync().catch(() => {});
    } else this.reconnected = true;
    this.ctx.scheduler.every('cluster-heartbeat', cfg.cluster.heartbeatIntervalMs, () => this.heartbeat());
    log.info({ nodeId: this.nodeId }, 'cluster mode: redis');
  }

  private lost(err: Error): void {
    this.reconnected = true;
    this.registered = false;
    this.outage.fail(err);
  }

  // ─── outgoing ────────────────────────────────────────────────────────────

  /** Aedes's 'publish' event: every message delivered on this node (after its local delivery) */
  private readonly onPublish = (packet: PublishPacket, _client: Client | null): void => {
    // the per-message cost while no other node subscribes: this line
    if (!packet.retain && this.remote.empty) return;
    if (this.injected.has(packet)) return;
    const topic = packet.topic;
    if (topic.charCodeAt(0) === 36 /* $ */) return; // $SYS: per broker
    const payload =
      typeof packet.payload === 'string' ? Buffer.from(packet.payload) : (packet.payload as Buffer);
    if (packet.retain) this.enqueueRetained({ topic, payload, qos: packet.qos, retain: true });
    else this.enqueue(topic, payload, packet.qos);
  };

  /** a live message for the nodes whose filters match it: written into their batches at once */
  private enqueue(topic: string, payload: Buffer, qos: 0 | 1 | 2): void {
    const targets = this.remote.match(topic);
    if (targets.length === 0) return;
    if (this.pub?.status !== 'ready') {
      this.dropped.inc({ reason: 'redis_down' }, targets.length);
      return;
    }
    const size = (7 + topic.length + payload.length) * targets.length;
    if (this.queuedBytes + size > this.ctx.cfg.cluster.maxQueuedBytes) {
      this.dropped.inc({ reason: 'queue_full' }, targets.length);
      this.rateLog.warn(
        'cluster:queue_full',
        { queuedBytes: this.queuedBytes },
        'cluster.maxQueuedBytes reached: messages for other nodes dropped while Redis is slow',
      );
      return;
    }
    let seg = this.queue[this.queue.length - 1];
    if (seg?.kind !== 'nodes') {
      seg = { kind: 'nodes', batches: new Map(), bytes: 0 };
      this.queue.push(seg);
    }
    for (const t of targets) {
      let batch = seg.batches.get(t);
      if (!batch) {
        batch = new BatchWriter(this.header);
        seg.batches.set(t, batch);
      }
      batch.add(topic, payload, qos, false);
    }
    seg.bytes += size;
    this.queuedBytes += size;
    this.scheduleFlush();
  }

  private enqueueRetained(m: ClusterMessage): void {
    if (this.pub?.status !== 'ready') {
      this.dropped.inc({ reason: 'redis_down' });
      return;
    }
    const size = m.payload.length + m.topic.length + 16;
    if (this.queuedBytes + size > this.ctx.cfg.cluster.maxQueuedBytes) {
      this.dropped.inc({ reason: 'queue_full' });
      return;
    }
    // retained changes keep their place among the other messages (a cleared alert's event, then its removal)
    this.queue.push({ kind: 'retained', topic: m.topic, message: m, bytes: size });
    this.queuedBytes += size;
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // one PUBLISH per target node per event-loop turn, whatever the number of messages
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.flushScheduled = false;
    const queue = this.queue;
    this.queue = [];
    const pub = this.pub;
    for (const seg of queue) {
      if (pub?.status !== 'ready') {
        this.queuedBytes -= seg.bytes;
        this.dropped.inc({ reason: 'redis_down' }, segmentMessages(seg));
        continue;
      }
      const done = (n: number) => () => {
        this.queuedBytes -= seg.bytes;
        this.forwarded.inc(undefined, n);
        this.outage.ok();
      };
      const failed = (n: number) => (err: unknown) => {
        this.queuedBytes -= seg.bytes;
        this.dropped.inc({ reason: 'redis_error' }, n);
        this.outage.fail(err);
      };
      if (seg.kind === 'nodes') {
        const sends: Promise<unknown>[] = [];
        for (const [node, batch] of seg.batches) sends.push(pub.publish(CHANNEL_MSG(node), batch.finish()));
        Promise.all(sends).then(done(segmentMessages(seg)), failed(segmentMessages(seg)));
      } else {
        const m = seg.message;
        const b = this.ctx.cfg.mqtt;
        const isAlert = m.topic === 'alerts' || m.topic.startsWith('alerts/');
        const deleting = m.payload.length === 0;
        if (!deleting && !isAlert && m.payload.length > b.maxRetainedPayloadBytes) {
          // too large to keep cluster-wide: still delivered live to the other nodes
          this.dropped.inc({ reason: 'retained_limit' });
          this.queuedBytes -= seg.bytes;
          this.enqueue(m.topic, m.payload, m.qos);
          continue;
        }
        const retainedBatch = Buffer.concat([this.header, encodeMessage(m)]);
        const liveBatch = Buffer.concat([this.header, encodeMessage({ ...m, retain: false })]);
        pub
          .retainCluster(
            RETAINED,
            m.topic,
            deleting ? '' : encodeRetained(m.qos, m.payload),
            b.maxRetainedMessages,
            retainedBatch,
            liveBatch,
            isAlert ? '1' : '0',
          )
          .then((stored) => {
            if (stored === 0) {
              this.dropped.inc({ reason: 'retained_limit' });
              this.rateLog.warn(
                'cluster:retained_limit',
                { topic: m.topic.slice(0, 200), max: b.maxRetainedMessages },
                'cluster-wide retained messages at mqtt.maxRetainedMessages: not retained on the other nodes (delivered live)',
              );
            }
            done(1)();
          }, failed(1));
      }
    }
  }

  // ─── incoming ────────────────────────────────────────────────────────────

  private onRedisMessage(channelBuf: Buffer, message: Buffer): void {
    const channel = channelBuf.toString();
    if (channel === CHANNEL_SUBS) {
      const node = message.toString();
      if (node !== this.nodeId) void this.readFilters(node).catch(() => {});
      return;
    }
    let batch: ReturnType<typeof decodeBatch>;
    try {
      batch = decodeBatch(message);
    } catch (err) {
      this.dropped.inc({ reason: 'bad_frame' });
      this.rateLog.warn('cluster:bad_frame', { channel, code: 'EI_CLUSTER_FRAME' }, String(err));
      return;
    }
    if (batch.origin === this.nodeId) return; // our own retained broadcast
    for (const m of batch.messages) this.inject(m);
  }

  /** a message from another node, for local delivery only (no ingress, no forwarding) */
  private inject(m: ClusterMessage): void {
    if (!this.aedes || this.stopped) return;
    const size = m.topic.length + m.payload.length;
    // retained ones are bounded by mqtt.maxRetainedMessages, and must not be lost
    if (!m.retain && this.inboundBytes + size > this.ctx.cfg.cluster.maxQueuedBytes) {
      this.dropped.inc({ reason: 'inbound_full' });
      this.rateLog.warn(
        'cluster:inbound_full',
        { inboundBytes: this.inboundBytes },
        'cluster.maxQueuedBytes reached: messages from other nodes dropped while local delivery is behind',
      );
      return;
    }
    this.inbound.push(m);
    this.inboundBytes += size;
    this.pump();
  }

  /** hands queued messages to Aedes, at most INJECT_IN_FLIGHT at a time (each done calls this again) */
  private pump(): void {
    if (this.pumping) return; // a done called back synchronously: the loop below goes on
    const aedes = this.aedes;
    if (!aedes) return;
    this.pumping = true;
    try {
      while (this.injecting < INJECT_IN_FLIGHT && this.inHead < this.inbound.length && !this.stopped) {
        const m = this.inbound[this.inHead]!;
        this.inbound[this.inHead++] = undefined as unknown as ClusterMessage;
        this.inboundBytes -= m.topic.length + m.payload.length;
        const packet = {
          cmd: 'publish',
          topic: m.topic,
          // a retained message is kept by Aedes: its own copy, not a view of the whole Redis batch
          payload: m.retain ? Buffer.from(m.payload) : m.payload,
          qos: m.qos,
          retain: m.retain,
          dup: false,
        } as PublishPacket;
        this.injected.add(packet);
        this.received.inc();
        this.injecting++;
        aedes.publish(packet, this.injectDone);
      }
      if (this.inHead === this.inbound.length) {
        this.inbound = [];
        this.inHead = 0;
      } else if (this.inHead >= 1024 && this.inHead * 2 >= this.inbound.length) {
        this.inbound = this.inbound.slice(this.inHead);
        this.inHead = 0;
      }
    } finally {
      this.pumping = false;
    }
  }

  /** the cluster's retained messages into the local Aedes (at start; before clients count on them) */
  private async loadRetained(): Promise<void> {
    const all = await this.pub!.hgetallBuffer(RETAINED);
    for (const [topic, value] of Object.entries(all)) {
      const r = decodeRetained(value);
      if (r) this.inject({ topic, payload: r.payload, qos: r.qos, retain: true });
    }
  }

  /**
   * After Redis came back (it may have restarted empty): this node's retained
   * messages go back into the hash unless another node wrote one meanwhile.
   */
  private async seedRetained(): Promise<void> {
    const aedes = this.aedes;
    const pub = this.pub;
    if (!aedes || !pub) return;
    const stream = (
      aedes as unknown as {
        persistence: { createRetainedStream(p: string): AsyncIterable<PublishPacket> };
      }
    ).persistence.createRetainedStream('#');
    for await (const p of stream) {
      if (p.topic.startsWith('$')) continue;
      const payload = typeof p.payload === 'string' ? Buffer.from(p.payload) : (p.payload as Buffer);
      if (payload.length === 0) continue;
      await pub.hsetnx(RETAINED, p.topic, encodeRetained(p.qos, payload));
    }
  }

  // ─── subscriptions ───────────────────────────────────────────────────────

  private readonly onSubscribe = (subs: Subscription[], client: Client): void => {
    let changed = false;
    for (const s of subs) if (s.qos !== (128 as number) && this.local.add(client.id, s.topic)) changed = true;
    if (changed) this.filtersChanged();
  };

  private readonly onUnsubscribe = (topics: string[], client: Client): void => {
    let changed = false;
    for (const t of topics) if (this.local.remove(client.id, t)) changed = true;
    if (changed) this.filtersChanged();
  };

  /** coalesced: one write of the set and one announcement per burst of subscription changes */
  private filtersChanged(): void {
    if (this.filtersDirty) return;
    this.filtersDirty = true;
    setTimeout(() => {
      this.filtersDirty = false;
      void this.writeFilters(true).catch(() => {});
    }, 20).unref();
  }

  private async writeFilters(announce: boolean): Promise<void> {
    const pub = this.pub;
    if (pub?.status !== 'ready' || this.stopped) return;
    const filters = this.local.filters();
    const key = KEY_SUBS(this.nodeId);
    const m = pub.multi().del(key);
    if (filters.length > 0) m.sadd(key, ...filters).expire(key, NODE_TTL_S);
    if (announce) m.publish(CHANNEL_SUBS, this.nodeId);
    await m.exec();
  }

  private async readFilters(node: string): Promise<void> {
    const pub = this.pub;
    if (pub?.status !== 'ready') return;
    this.remote.set(node, await pub.smembers(KEY_SUBS(node)));
  }

  /** every live node's filters (at start, after a reconnect, every heartbeat: nothing missed stays missed) */
  private async resync(): Promise<void> {
    const pub = this.pub;
    if (pub?.status !== 'ready') return;
    const nodes = await this.nodeIds();
    this.liveNodes = nodes.length;
    const others = nodes.filter((n) => n !== this.nodeId);
    const p = pub.pipeline();
    for (const n of others) p.smembers(KEY_SUBS(n));
    const results = (await p.exec()) ?? [];
    others.forEach((n, i) => {
      const [err, members] = results[i] ?? [null, []];
      if (!err) this.remote.set(n, members as string[]);
    });
    this.remote.retain(new Set(others));
  }

  private async nodeIds(): Promise<string[]> {
    const pub = this.pub!;
    const ids: string[] = [];
    let cursor = '0';
    do {
      const [next, keys] = await pub.scan(cursor, 'MATCH', `${NODE_PREFIX}*`, 'COUNT', 1000);
      cursor = next;
      for (const k of keys) ids.push(k.slice(NODE_PREFIX.length));
    } while (cursor !== '0');
    return ids;
  }

  // ─── registry ────────────────────────────────────────────────────────────

  private async heartbeat(): Promise<void> {
    if (this.pub?.status !== 'ready') return; // the outage is logged once by the connection's handlers
    await this.beat();
    await this.resync();
  }

  private info(): NodeInfo {
    const s = this.deps.stats();
    const now = Date.now();
    const accepted = this.ctx.metrics.readingsAccepted.get();
    const dt = (now - this.lastBeatAt) / 1000;
    if (dt >= 0.5) {
      this.readingsPerS = Math.round(((accepted - this.lastAccepted) / dt) * 10) / 10;
      this.lastAccepted = accepted;
      this.lastBeatAt = now;
    }
    const { cfg } = this.ctx;
    return {
      id: this.nodeId,
      mqtt: `${advertised(cfg.mqtt.host)}:${s.mqttPort}`,
      http: `${advertised(cfg.http.host)}:${s.httpPort}`,
      started_at: this.startedAt.toISOString(),
      last_seen: new Date(now).toISOString(),
      connected_clients: s.connectedClients,
      readings_per_s: this.readingsPerS,
      backlog: s.backlog,
    };
  }

  /** register (or refresh) this node and its filters, both expiring unless refreshed */
  private async beat(): Promise<void> {
    const pub = this.pub;
    if (!pub || this.stopped) return;
    const filters = this.local.filters();
    const key = KEY_SUBS(this.nodeId);
    const info = { ...this.info(), instance: this.instance };
    const m = pub
      .multi()
      .get(KEY_NODE(this.nodeId))
      .set(KEY_NODE(this.nodeId), JSON.stringify(info), 'EX', NODE_TTL_S);
    if (filters.length > 0)
      m.del(key)
        .sadd(key, ...filters)
        .expire(key, NODE_TTL_S);
    else m.del(key);
    // announced when we were not registered: the others learn our filters now, not at their next resync
    if (!this.registered) m.publish(CHANNEL_SUBS, this.nodeId);
    const results = await m.exec();
    this.registered = true;
    this.checkConflict(results?.[0]?.[1], info.last_seen);
  }

  /**
   * CLUSTER_NODE_ID must be unique (contract section 14): another live process
   * wrote our registry entry since our last beat. Said loudly, since two nodes
   * with one id overwrite each other's filters and lose messages.
   */
  private checkConflict(previous: unknown, now: string): void {
    const writtenBefore = this.lastWrite;
    this.lastWrite = now;
    if (typeof previous !== 'string') return;
    try {
      const p = JSON.parse(previous) as { instance?: string; last_seen?: string; mqtt?: string };
      // an earlier incarnation of this node (killed, restarted) wrote before we started: not a conflict
      if (!p.instance || p.instance === this.instance) return;
      if (Date.parse(p.last_seen ?? '') < Date.parse(writtenBefore)) return;
      this.idConflicts++;
      this.rateLog.warn(
        'cluster:node_id_conflict',
        { nodeId: this.nodeId, other: p.mqtt ?? null },
        'another running node has the same CLUSTER_NODE_ID: every node needs its own (messages for this id are lost)',
      );
    } catch {
      // not ours
    }
  }

  /** GET /api/cluster: the nodes seen within the last 15 s */
  async nodes(): Promise<NodeInfo[]> {
    const pub = this.pub;
    if (pub?.status !== 'ready') throw new Error('Redis unreachable');
    const ids = await this.nodeIds();
    if (ids.length === 0) return [];
    const values = await pub.mget(...ids.map(KEY_NODE));
    const now = Date.now();
    const out: NodeInfo[] = [];
    for (const v of values) {
      if (!v) continue;
      try {
        const n = JSON.parse(v) as NodeInfo;
        if (now - Date.parse(n.last_seen) <= NODE_TTL_S * 1000)
          out.push({
            id: n.id,
            mqtt: n.mqtt,
            http: n.http,
            started_at: n.started_at,
            last_seen: n.last_seen,
            connected_clients: n.connected_clients,
            readings_per_s: n.readings_per_s,
            backlog: n.backlog,
          });
      } catch {
        // not ours: skipped
      }
    }
    out.sort((a, b) => a.id.localeCompare(b.id));
    this.liveNodes = out.length;
    return out;
  }

  /** checks.cluster: Redis answers and this node is registered */
  async probe(): Promise<void> {
    const pub = this.pub;
    if (pub?.status !== 'ready') throw new Error('Redis unreachable: cross-node delivery paused');
    if ((await pub.exists(KEY_NODE(this.nodeId))) !== 1) {
      await this.beat();
      if ((await pub.exists(KEY_NODE(this.nodeId))) !== 1) throw new Error('this node is not registered');
    }
  }

  async stop(): Promise<void> {
    this.ctx.scheduler.stop('cluster-heartbeat');
    const aedes = this.aedes;
    if (aedes) {
      aedes.removeListener('publish', this.onPublish);
      aedes.removeListener('subscribe', this.onSubscribe);
      aedes.removeListener('unsubscribe', this.onUnsubscribe);
    }
    this.stopped = true;
    this.inbound = [];
    this.inHead = 0;
    this.inboundBytes = 0;
    const pub = this.pub;
    const sub = this.sub;
    // leave at once rather than after 15 s: the others stop forwarding here
    if (pub?.status === 'ready') {
      await pub
        .multi()
        .del(KEY_NODE(this.nodeId), KEY_SUBS(this.nodeId))
        .publish(CHANNEL_SUBS, this.nodeId)
        .exec()
        .catch(() => {});
    }
    if (sub) await sub.quit().catch(() => sub.disconnect());
    if (pub) await pub.quit().catch(() => pub.disconnect());
  }

  registerMetrics(m: Metrics): void {
    for (const c of [this.forwarded, this.received, this.dropped])
      m.registry.registerMetric(c.prom() as never);
    m.gauge('energy_ingest_cluster_nodes', 'nodes in the registry at the last look (this one included)', () =>
      Math.max(this.liveNodes, this.registered ? 1 : 0),
    );
    m.gauge(
      'energy_ingest_cluster_remote_filters',
      "other nodes' subscription filters this node forwards to",
      () => this.remote.size,
    );
    m.gauge(
      'energy_ingest_cluster_local_filters',
      "this node's distinct subscription filters, as published to the others",
      () => this.local.size,
    );
    m.gauge(
      'energy_ingest_cluster_queued_bytes',
      'bytes of messages waiting for (or in flight to) Redis for other nodes',
      () => this.queuedBytes,
    );
    m.counter(
      'energy_ingest_cluster_node_id_conflicts_total',
      'heartbeats that found this node id written by another running node (CLUSTER_NODE_ID must be unique)',
      () => this.idConflicts,
    );
    m.gauge('energy_ingest_cluster_redis_up', '1 while the cluster connection to Redis is ready', () =>
      this.pub?.status === 'ready' ? 1 : 0,
    );
  }
}

function segmentMessages(seg: Segment): number {
  if (seg.kind === 'retained') return 1;
  let n = 0;
  for (const batch of seg.batches.values()) n += batch.count;
  return n;
}

/** a wildcard bind address says nothing to another node: the host name does */
function advertised(host: string): string {
  return host === '0.0.0.0' || host === '::' || host === '' ? hostname() : host;
}
