/**
 * Secrets in URLs: a password in the userinfo or in a query parameter (pg and
 * ioredis honour `?password=`, InfluxDB 1.x `?p=`) must never reach an error
 * message, a log line or an HTTP answer. Node's fetch repeats the whole URL in
 * its errors, so messages are scrubbed too, not only the URLs we print.
 */

const SECRET_PARAM = /^(password|pass|passwd|pwd|token|secret|p|api[_-]?key|access[_-]?token)$/i;

/** the URL with its userinfo password and password-like query values replaced by *** */
export function redactUrl(raw: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return '***';
  }
  let changed = false;
  if (u.password) {
    u.password = '***';
    changed = true;
  }
  for (const key of [...u.searchParams.keys()]) {
    if (SECRET_PARAM.test(key)) {
      u.searchParams.set(key, '***');
      changed = true;
    }
  }
  // unchanged URLs keep their exact spelling (no trailing slash added)
  return changed ? u.toString() : raw;
}

// scheme://… up to white space or a quote/bracket
const URL_IN_TEXT = /\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>`]+/gi;

/** every URL inside free text (error messages, log lines) passed through redactUrl */
export function redactText(text: string): string {
  return text.replace(URL_IN_TEXT, (m) => {
    try {
      new URL(m);
    } catch {
      // not parseable: still cut a user:password@ part
      return m.replace(/\/\/([^/@:\s]*):[^/@\s]*@/, '//$1:***@');
    }
    return redactUrl(m);
  });
}

export interface UrlCredentials {
  readonly url: string;
  readonly username?: string;
  readonly password?: string;
}

/**
 * Takes user and password out of a URL (userinfo, or InfluxDB 1.x's `u`/`p`
 * parameters): fetch refuses URLs with credentials, and the bare URL is then
 * safe to print. Returns the URL unchanged when it carries none.
 */
export function splitUrlCredentials(raw: string): UrlCredentials {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return { url: raw };
  }
  let username = u.username ? decodeURIComponent(u.username) : undefined;
  let password = u.password ? decodeURIComponent(u.password) : undefined;
  const qu = u.searchParams.get('u');
  const qp = u.searchParams.get('p');
  if (username === undefined && password === undefined && qu === null && qp === null) return { url: raw };
  username ??= qu ?? undefined;
  password ??= qp ?? undefined;
  u.username = '';
  u.password = '';
  u.searchParams.delete('u');
  u.searchParams.delete('p');
  const out: { url: string; username?: string; password?: string } = { url: u.toString() };
  if (username !== undefined && username !== '') out.username = username;
  if (password !== undefined) out.password = password;
  return out;
}
