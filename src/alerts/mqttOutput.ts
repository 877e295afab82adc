import type { Aedes, PublishPacket } from 'aedes';
import type { Logger } from 'pino';
import type { Metrics } from '../metrics.js';
import { type AlertEvent, alertTopic } from './evaluator.js';

// Alert events on the embedded broker (contract section 11): QoS 1, the raised
// event retained so a dashboard that subscribes later sees what is active; a
// clear sends the cleared event, then an empty retained message removing it.

const MAX_QUEUED = 10_000;

function packet(topic: string, payload: string, retain: boolean): PublishPacket {
  return {
    cmd: 'publish',
    topic,
    payload: Buffer.from(payload),
    qos: 1,
    retain,
    dup: false,
  } as PublishPacket;
}

export class AlertMqttOutput {
  private aedes: Aedes | null = null;
  /** events waiting for the broker to start (rule changes and restores happen before it listens) */
  private early: AlertEvent[] = [];
  private disabled = false;

  constructor(
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {}

  attach(aedes: Aedes): void {
    this.aedes = aedes;
    const early = this.early;
    this.early = [];
    this.deliver(early);
  }

  detach(): void {
    this.aedes = null;
  }

  /** no embedded broker (mqtt.enabled: false): nothing to deliver to, nothing to keep for later */
  disable(): void {
    this.disabled = true;
    this.early = [];
  }

  deliver(events: readonly AlertEvent[]): void {
    if (this.disabled) return;
    const aedes = this.aedes;
    if (!aedes) {
      for (const e of events) {
        if (this.early.length >= MAX_QUEUED) {
          this.early.shift();
          this.metrics.alertDeliveryDropped.inc({ output: 'mqtt' });
        }
        this.early.push(e);
      }
      return;
    }
    // Aedes delivers publishes of one caller in order, so raised → cleared → delete stays ordered.
    for (const e of events) {
      const topic = alertTopic(e);
      const body = JSON.stringify(e);
      if (e.state === 'raised') this.publish(aedes, packet(topic, body, true));
      else {
        this.publish(aedes, packet(topic, body, false));
        this.publish(aedes, packet(topic, '', true));
      }
    }
  }

  /** The retained state of alerts active before a restart (the broker's retained store lives in memory). */
  republish(active: readonly AlertEvent[]): void {
    this.deliver(active.filter((e) => e.state === 'raised'));
  }

  private publish(aedes: Aedes, p: PublishPacket): void {
    aedes.publish(p, (err) => {
      if (err) this.log.warn({ err: err.message, topic: p.topic }, 'alert publish on the broker failed');
    });
  }
}
