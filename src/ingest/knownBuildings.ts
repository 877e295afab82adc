// The building check of contract section 4: when any building metadata is
// known, readings for other buildings are rejected (unless configured not to).
// The set is swapped whole when metadata reloads, so a check is one Set lookup.

export class KnownBuildings {
  private ids: ReadonlySet<number> = new Set();

  constructor(private readonly acceptUnknown: boolean) {}

  replace(ids: Iterable<number>): void {
    this.ids = new Set(ids);
  }

  get size(): number {
    return this.ids.size;
  }

  accepts(id: number): boolean {
    return this.acceptUnknown || this.ids.size === 0 || this.ids.has(id);
  }
}
