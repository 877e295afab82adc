import type { MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { type AlertEvent, alertTopic } from '../alerts/evaluator.js';
import { RateLimitedLog } from '../log.js';
import type { Metrics } from '../metrics.js';

// Alert events on the upstream broker (contract sections 11 and 15), as
// src/sinks/alertMqtt.ts does on the embedded one: QoS 1, the raised event
// retained; a clear sends the cleared event, then an empty retained message.
// MQTT.js keeps QoS 1 publishes made while disconnected and sends them, in
// order, after the next CONNACK; at most MAX_PENDING wait, the newest beyond
// are dropped (counted). Every connect restates the active alerts (retained),
// so a broker that lost its retained store heals.

const MAX_PENDING = 10_000;

export class UpstreamAlertOutput {
  private client: MqttClient | null = null;
  private pending = 0;
  private readonly warnings: RateLimitedLog;

  constructor(
    private readonly metrics: Metrics,
    log: Logger,
  ) {
    this.warnings = new RateLimitedLog(log);
  }

  attach(client: MqttClient): void {
    this.client = client;
  }

  detach(): void {
    this.client = null;
  }

  deliver(events: readonly AlertEvent[]): void {
    for (const e of events) {
      const topic = alertTopic(e);
      const body = JSON.stringify(e);
      if (e.state === 'raised') this.publish(topic, body, true);
      else {
        this.publish(topic, body, false);
        this.publish(topic, '', true);
      }
    }
  }

  republish(active: readonly AlertEvent[]): void {
    this.deliver(active.filter((e) => e.state === 'raised'));
  }

  private publish(topic: string, body: string, retain: boolean): void {
    const client = this.client;
    if (!client) return;
    if (this.pending >= MAX_PENDING) {
      this.metrics.alertDeliveryDropped.inc({ output: 'upstream' });
      return;
    }
    this.pending++;
    client.publish(topic, body, { qos: 1, retain }, (err) => {
      this.pending--;
      if (err)
        this.warnings.warn(
          'upstream-alert',
          { topic, err: err.message },
          'alert publish on the upstream broker failed',
        );
    });
  }
}
