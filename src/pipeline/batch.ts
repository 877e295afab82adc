/**
 * A batch of line-protocol lines, kept as the body the sink will be sent:
 * each line is encoded into it once, as it arrives, and the per-line facts
 * (receipt time, which log record it came from) sit in typed arrays. So a
 * point waiting for its batch is a few bytes outside the JS heap, not
 * objects and strings: before, every waiting point was a Point, its line
 * and its source, all copied by each young-generation collection they lived
 * through and then promoted (bench/README.md, "Where a reading's CPU goes":
 * about 2.5 µs per reading went to scavenges at 20,000 readings/s).
 *
 * A line the sink refuses is dead-lettered with its message, read back from
 * the durable log by its record's offset (the log keeps every record until
 * the batch holding it is committed).
 */
const EMPTY = Buffer.alloc(0);

interface Storage {
  buf: Buffer;
  starts: Int32Array;
  received: Float64Array;
  records: Float64Array;
}

/**
 * Written batches' storage, for the next batches (issue 15): a new body and
 * three typed arrays per 5,000-line batch were ~850 KB of external memory per
 * 5,000 readings, which V8 answers with collections. At most `max` kept.
 */
export class BatchPool {
  private readonly free: Storage[] = [];

  constructor(private readonly max = 2) {}

  take(lines: number, bytes: number): Storage | undefined {
    for (let i = this.free.length - 1; i >= 0; i--) {
      const s = this.free[i]!;
      if (s.starts.length >= lines && s.buf.length >= bytes) {
        this.free.splice(i, 1);
        return s;
      }
    }
    return undefined;
  }

  give(s: Storage): void {
    if (this.free.length < this.max && s.buf.length > 0) this.free.push(s);
  }
}

export class LineBatch {
  /** the lines, "\n" between them (bytes [0, used)) */
  private buf: Buffer;
  private used = 0;
  private starts: Int32Array;
  private received: Float64Array;
  private records: Float64Array;
  /** lines in the batch */
  count = 0;
  /** log offset below which every record has all its lines in this or an earlier batch; 0: none ends here */
  end = 0;
  done = false;

  /**
   * Sized for what is expected (the previous batch, at most the batch size):
   * growing copies the buffer, and a 5,000-line batch grown from 1,024 lines
   * copied about 1 MB (measured at ~2% of the CPU per reading).
   */
  constructor(
    expectedLines: number,
    expectedBytes = expectedLines * 160,
    private readonly pool?: BatchPool,
  ) {
    const lines = Math.max(16, expectedLines);
    const bytes = Math.max(4096, expectedBytes);
    const reused = pool?.take(lines, bytes);
    this.buf = reused?.buf ?? Buffer.allocUnsafe(bytes);
    this.starts = reused?.starts ?? new Int32Array(lines);
    this.received = reused?.received ?? new Float64Array(lines);
    this.records = reused?.records ?? new Float64Array(lines);
  }

  add(line: string, receivedAtMs: number, recordStart: number): void {
    const n = this.count;
    if (n === this.starts.length) this.growLines();
    // UTF-8 takes at most 3 bytes per UTF-16 unit; +1 for the separator
    const room = line.length * 3 + 1;
    if (this.used + room > this.buf.length) this.growBytes(room);
    if (n > 0) this.buf[this.used++] = 0x0a;
    this.starts[n] = this.used;
    this.used += this.buf.write(line, this.used, 'utf8');
    this.received[n] = receivedAtMs;
    this.records[n] = recordStart;
    this.count = n + 1;
  }

  /** A line already encoded: bytes [from, to) of src (the durable log's chunk, issue 15). */
  addBytes(src: Buffer, from: number, to: number, receivedAtMs: number, recordStart: number): void {
    const n = this.count;
    if (n === this.starts.length) this.growLines();
    const room = to - from + 1;
    if (this.used + room > this.buf.length) this.growBytes(room);
    const buf = this.buf;
    let p = this.used;
    if (n > 0) buf[p++] = 0x0a;
    this.starts[n] = p;
    // native: a JS byte loop costs ~2 ns per byte, 300 ns for a line
    this.used = p + src.copy(buf, p, from, to);
    this.received[n] = receivedAtMs;
    this.records[n] = recordStart;
    this.count = n + 1;
  }

  /** Lines [from, to) as one body (no copy: a view of the batch's buffer). */
  body(from = 0, to = this.count): Buffer {
    const stop = to < this.count ? this.starts[to]! - 1 : this.used;
    return this.buf.subarray(this.starts[from]!, stop);
  }

  /** bytes of the body */
  get bytes(): number {
    return this.used;
  }

  /** Line i, decoded (for logs and tests). */
  line(i: number): string {
    return this.body(i, i + 1).toString('utf8');
  }

  receivedAt(i: number): number {
    return this.received[i]!;
  }

  /** the log offset of the record line i came from */
  record(i: number): number {
    return this.records[i]!;
  }

  /**
   * Written: the bytes can go. A finished batch may wait in the pipeline's
   * queue for an earlier one (the log commits in order) and must not hold its
   * body meanwhile. Only `count`, `end` and `done` stay meaningful.
   */
  release(): void {
    // the sink is done with the body (its write settled): the next batch may take the storage
    this.pool?.give({ buf: this.buf, starts: this.starts, received: this.received, records: this.records });
    this.buf = EMPTY;
    this.used = 0;
    this.starts = new Int32Array(0);
    this.received = new Float64Array(0);
    this.records = new Float64Array(0);
  }

  private growLines(): void {
    const size = this.starts.length * 2;
    const grow = <T extends Int32Array | Float64Array>(a: T, make: (n: number) => T): T => {
      const b = make(size);
      b.set(a);
      return b;
    };
    this.starts = grow(this.starts, (n) => new Int32Array(n));
    this.received = grow(this.received, (n) => new Float64Array(n));
    this.records = grow(this.records, (n) => new Float64Array(n));
  }

  private growBytes(room: number): void {
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.used + room));
    this.buf.copy(next, 0, 0, this.used);
    this.buf = next;
  }
}
