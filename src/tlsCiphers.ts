/**
 * The cipher suites every TLS listener offers (MQTT over TLS, HTTPS/WSS).
 * TLS 1.2: ECDHE key exchange only (forward secrecy: a stolen server key does
 * not decrypt recorded sessions) with AEAD ciphers only; Node's default list
 * also offers static-RSA key exchange and CBC with SHA-1 (AES128-SHA and the
 * like). TLS 1.3's suites are all ephemeral and AEAD. DHE suites are left out:
 * Node offers them only with a configured dhparam, which the daemon has none of.
 * TLS 1.0 and 1.1 are refused by minVersion.
 */
export const TLS_CIPHERS = [
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'TLS_AES_128_GCM_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

export const TLS_MIN_VERSION = 'TLSv1.2';
