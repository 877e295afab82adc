import { describe, expect, it } from 'vitest';
import { capConnections, fileDescriptorLimit, SocketBudget } from '../../src/broker/limits.js';

const limits = (
  soft: string,
  hard: string,
) => `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            ${soft.padEnd(20)} ${hard.padEnd(20)} files
Max locked memory         8388608              8388608              bytes
`;

describe('connections capped by the file-descriptor limit', () => {
  it('reads the soft RLIMIT_NOFILE from /proc/self/limits', () => {
    expect(fileDescriptorLimit(limits('300', '300'))).toBe(300);
    expect(fileDescriptorLimit(limits('1024', '524288'))).toBe(1024);
    expect(fileDescriptorLimit(limits('unlimited', 'unlimited'))).toBeNull();
    expect(fileDescriptorLimit('garbage')).toBeNull();
    // this very process (Linux CI): a positive number
    expect(fileDescriptorLimit()).toBeGreaterThan(0);
  });

  it('caps maxConnections at the limit minus the reserve, and says from what', () => {
    expect(capConnections(10_000, 300, 256)).toEqual({
      maxConnections: 44,
      cappedFrom: 10_000,
      fdLimit: 300,
      maxSockets: 300 - 192, // a quarter of the reserve for sockets in CONNECT or being refused
    });
    expect(capConnections(10_000, 1_048_576, 256)).toEqual({
      maxConnections: 10_000,
      fdLimit: 1_048_576,
      maxSockets: 1_048_576 - 192,
    });
    expect(capConnections(10_000, 100, 256).maxConnections).toBe(1);
    expect(capConnections(500, null, 256)).toEqual({ maxConnections: 500, fdLimit: null });
  });

  it('the socket budget refuses beyond its size until sockets close', () => {
    const b = new SocketBudget(2);
    expect([b.take(), b.take(), b.take()]).toEqual([true, true, false]);
    b.release();
    expect(b.take()).toBe(true);
    expect(b.size).toBe(2);
  });
});
