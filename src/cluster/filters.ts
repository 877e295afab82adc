// The cluster-wide view of subscription filters (contract section 14: a
// message crosses to another node only when a subscriber there matches it).
//
// Each node's filters are a small set that changes when dashboards subscribe
// or leave, while every published message is matched against them: so the
// view is a trie rebuilt on change, and matching walks it once per message.
// MQTT 3.1.1 semantics: `+` is exactly one level (an empty one too), `#` is the
// level it stands at and everything below (`a/#` matches `a`). Topics starting
// with `$` are never forwarded, so the `$` rule for wildcards never comes up.

interface TrieNode {
  readonly children: Map<string, TrieNode>;
  plus: TrieNode | null;
  /** owners with `…/#` ending here */
  hash: string[] | null;
  /** owners whose filter ends exactly here */
  exact: string[] | null;
}

const newNode = (): TrieNode => ({ children: new Map(), plus: null, hash: null, exact: null });

/** a syntactically valid MQTT subscription filter (what Aedes accepted) */
export function isValidFilter(filter: string): boolean {
  if (filter.length === 0) return false;
  const levels = filter.split('/');
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i]!;
    if (l === '#') {
      if (i !== levels.length - 1) return false;
    } else if (l !== '+' && (l.includes('#') || l.includes('+'))) return false;
  }
  return true;
}

/** Which owners (node ids) have a filter matching a topic. */
export class FilterView {
  private readonly byOwner = new Map<string, ReadonlySet<string>>();
  private root: TrieNode | null = null;
  private filterCount = 0;

  /** true when no owner has any filter: the per-message check is this one field */
  get empty(): boolean {
    return this.filterCount === 0;
  }

  get size(): number {
    return this.filterCount;
  }

  owners(): string[] {
    return [...this.byOwner.keys()];
  }

  filtersOf(owner: string): ReadonlySet<string> {
    return this.byOwner.get(owner) ?? new Set();
  }

  /** replace an owner's filters (invalid ones are ignored); an empty list removes the owner */
  set(owner: string, filters: Iterable<string>): void {
    const valid = new Set<string>();
    for (const f of filters) if (isValidFilter(f)) valid.add(f);
    const cur = this.byOwner.get(owner);
    // every heartbeat re-reads every node's filters: the trie is rebuilt only when they changed
    if (cur ? sameSet(cur, valid) : valid.size === 0) return;
    if (valid.size === 0) this.byOwner.delete(owner);
    else this.byOwner.set(owner, valid);
    this.rebuild();
  }

  remove(owner: string): void {
    if (this.byOwner.delete(owner)) this.rebuild();
  }

  /** keep only these owners (the live nodes) */
  retain(owners: ReadonlySet<string>): void {
    let changed = false;
    for (const o of [...this.byOwner.keys()])
      if (!owners.has(o)) {
        this.byOwner.delete(o);
        changed = true;
      }
    if (changed) this.rebuild();
  }

  /** the owners with a filter matching `topic`, each once */
  match(topic: string): string[] {
    const out: string[] = [];
    const root = this.root;
    if (root === null) return out;
    // the common case, e.g. only alerts/# elsewhere (every status page subscribes to it) and a
    // reading on sensors/…: one look-up of the first level, no split
    if (root.plus === null && root.hash === null) {
      const slash = topic.indexOf('/');
      if (!root.children.has(slash < 0 ? topic : topic.slice(0, slash))) return out;
    }
    walk(root, topic.split('/'), 0, out);
    return out;
  }

  private rebuild(): void {
    let count = 0;
    const root = newNode();
    for (const [owner, filters] of this.byOwner) {
      for (const f of filters) {
        count++;
        let node = root;
        let ended = false;
        const levels = f.split('/');
        for (const l of levels) {
          if (l === '#') {
            node.hash = addOwner(node.hash, owner);
            ended = true;
            break;
          }
          if (l === '+') node = node.plus ??= newNode();
          else {
            let next = node.children.get(l);
            if (!next) {
              next = newNode();
              node.children.set(l, next);
            }
            node = next;
          }
        }
        if (!ended) node.exact = addOwner(node.exact, owner);
      }
    }
    this.filterCount = count;
    this.root = count === 0 ? null : root;
  }
}

function sameSet(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a.size !== b.size) return false;
  for (const x of a) if (!b.has(x)) return false;
  return true;
}

function addOwner(list: string[] | null, owner: string): string[] {
  if (!list) return [owner];
  if (!list.includes(owner)) list.push(owner);
  return list;
}

function collect(out: string[], owners: readonly string[]): void {
  for (const o of owners) if (!out.includes(o)) out.push(o);
}

function walk(node: TrieNode, levels: readonly string[], i: number, out: string[]): void {
  if (node.hash) collect(out, node.hash);
  if (i === levels.length) {
    if (node.exact) collect(out, node.exact);
    return;
  }
  const child = node.children.get(levels[i]!);
  if (child) walk(child, levels, i + 1, out);
  if (node.plus) walk(node.plus, levels, i + 1, out);
}

/**
 * This node's own filters, from Aedes's subscribe/unsubscribe events: a
 * filter counts while any client holds it. A persistent session keeps its
 * filters while it is away (Aedes queues for it), a clean one drops them when
 * it goes (Aedes then reports them as unsubscribed).
 */
export class LocalFilters {
  private readonly byClient = new Map<string, Set<string>>();
  private readonly counts = new Map<string, number>();

  /** true when the set of distinct filters changed */
  add(clientId: string, filter: string): boolean {
    let mine = this.byClient.get(clientId);
    if (!mine) {
      mine = new Set();
      this.byClient.set(clientId, mine);
    }
    if (mine.has(filter)) return false;
    mine.add(filter);
    const n = this.counts.get(filter) ?? 0;
    this.counts.set(filter, n + 1);
    return n === 0;
  }

  /** true when the set of distinct filters changed */
  remove(clientId: string, filter: string): boolean {
    const mine = this.byClient.get(clientId);
    if (!mine?.delete(filter)) return false;
    if (mine.size === 0) this.byClient.delete(clientId);
    const n = (this.counts.get(filter) ?? 1) - 1;
    if (n > 0) {
      this.counts.set(filter, n);
      return false;
    }
    this.counts.delete(filter);
    return true;
  }

  filters(): string[] {
    return [...this.counts.keys()];
  }

  get size(): number {
    return this.counts.size;
  }
}
