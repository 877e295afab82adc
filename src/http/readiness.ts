import type { Component, ReadinessExtra } from '../component.js';
import { redactText } from '../redact.js';

// GET /ready (contract section 10): every started part's own probe, each with
// its latency, its current error and the last error it had (kept after it
// recovers: what went wrong, and when). /api/status shows the last answer
// instead of probing on every request.

export interface Check {
  [field: string]: unknown;
  ok: boolean;
  latency_ms?: number;
  error?: string;
  last_error?: { error: string; at: string } | null;
}

const PROBE_TIMEOUT_MS = 2000;

export class Readiness {
  private readonly lastErrors = new Map<string, { error: string; at: string }>();
  /** the last answer, for /api/status */
  last: unknown = null;

  constructor(
    private readonly parts: () => readonly Component[],
    private readonly extra: () => ReadinessExtra,
  ) {}

  async check(): Promise<{ ready: boolean; body: unknown }> {
    const checks: Record<string, Check> = {};
    for (const part of this.parts()) {
      if (part.check !== undefined && part.probe)
        checks[part.check] = await this.timed(part.check, part.probe.bind(part));
    }
    const extra = this.extra();
    const ready = Object.values(checks).every((c) => c.ok) && extra.ready;
    const body = { status: ready ? 'ready' : 'degraded', checks, ...extra.body };
    this.last = body;
    return { ready, body };
  }

  private async timed(name: string, probe: () => Promise<unknown>): Promise<Check> {
    const t0 = performance.now();
    let check: Check;
    let timer: NodeJS.Timeout | undefined;
    try {
      const answer = await Promise.race([
        probe(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error('timeout after 2 s')), PROBE_TIMEOUT_MS);
        }),
      ]);
      const latency_ms = Math.round(performance.now() - t0);
      const fields =
        typeof answer === 'object' && answer !== null ? (answer as Record<string, unknown>) : undefined;
      if (fields && fields.ok === false) {
        const error = redactText(String(fields.error ?? 'not ready'));
        this.lastErrors.set(name, { error, at: new Date().toISOString() });
        check = { ...fields, ok: false, latency_ms, error };
      } else check = { ...fields, ok: true, latency_ms };
    } catch (err) {
      // /ready and /api/status are unauthenticated: no URL with a password in them
      const error = redactText((err as Error).message);
      this.lastErrors.set(name, { error, at: new Date().toISOString() });
      check = { ok: false, latency_ms: Math.round(performance.now() - t0), error };
    } finally {
      clearTimeout(timer);
    }
    check.last_error = this.lastErrors.get(name) ?? null;
    return check;
  }
}
