// The live status page at `/`: a static document, its stylesheet
// (/assets/status.css) and its script (/assets/status.js), plus MQTT.js's
// browser bundle (/assets/mqtt.min.js), all served by the daemon. No inline
// script or style: the page's Content-Security-Policy (src/http/routes.ts)
// allows scripts, styles and connections from its own origin only, so HTML
// that slips into a rendered field could not run. Numbers come from
// /api/status (every second) and /api/latest (every 3 s), a building's energy
// and forecast from /api/energy/{id} (every minute); alerts arrive live
// over MQTT on WebSocket (/mqtt, retained = what is active), with
// /api/alerts/active as the fallback when the broker refuses an anonymous
// browser.

export const STATUS_PAGE = `<!doctype html>
<html lang="ko">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>energy-ingest</title>
<link rel="stylesheet" href="/assets/status.css">
</head>
<body>
<header>
  <h1>energy-ingest</h1>
  <span id="ready" class="pill" data-i18n="loading">…</span>
  <span class="spacer"></span>
  <span class="meta" id="live"></span>
  <span class="meta" id="uptime"></span>
  <button class="lang" data-lang="ko" aria-pressed="false" title="한국어">KO</button>
  <button class="lang" data-lang="en" aria-pressed="false" title="English">EN</button>
</header>
<main>
  <div class="cards">
    <div class="card"><div class="label" data-i18n="rate"></div><div class="value" id="rate">0</div><div class="sub" id="rate-sub"></div></div>
    <div class="card"><div class="label" data-i18n="received"></div><div class="value" id="received">0</div><div class="sub" id="rejected"></div></div>
    <div class="card"><div class="label" data-i18n="written"></div><div class="value" id="written">0</div><div class="sub" id="latency"></div></div>
    <div class="card"><div class="label" data-i18n="clients"></div><div class="value" id="clients">0</div><div class="sub" id="sink"></div></div>
    <div class="card"><div class="label" data-i18n="backlog"></div><div class="value" id="backlog">0</div><div class="sub" id="log"></div></div>
    <div class="card"><div class="label" data-i18n="alerts"></div><div class="value" id="alerts-count">0</div><div class="sub" id="alerts-source"></div></div>
  </div>
  <div class="row">
    <section>
      <h2 data-i18n="chart"></h2>
      <canvas id="chart" width="900" height="180"></canvas>
      <div class="legend"><i class="acc"></i><span data-i18n="accepted"></span><i class="wr"></i><span data-i18n="writtenS"></span></div>
    </section>
    <section>
      <h2 data-i18n="services"></h2>
      <div id="services"></div>
    </section>
  </div>
  <section>
    <h2 data-i18n="activeAlerts"></h2>
    <div class="scroll">
      <table><thead><tr><th data-i18n="severity"></th><th data-i18n="where"></th><th data-i18n="sensor"></th><th data-i18n="value"></th><th data-i18n="message"></th><th data-i18n="since"></th></tr></thead>
      <tbody id="alerts"></tbody></table>
      <div class="empty" id="alerts-empty" data-i18n="noAlerts"></div>
      <div class="empty" id="alerts-more"></div>
    </div>
  </section>
  <section id="cluster" hidden>
    <h2 data-i18n="nodes"></h2>
    <div class="scroll">
      <table><thead><tr><th data-i18n="node"></th><th data-i18n="addresses"></th><th class="num" data-i18n="nodeClients"></th><th class="num" data-i18n="nodeRate"></th><th class="num" data-i18n="nodeBacklog"></th><th data-i18n="nodeSeen"></th></tr></thead>
      <tbody id="nodes"></tbody></table>
    </div>
  </section>
  <section>
    <h2 data-i18n="buildings"></h2>
    <input type="search" id="filter" autocomplete="off">
    <div class="scroll">
      <table><thead><tr><th data-i18n="building"></th><th class="num" data-i18n="readings"></th><th data-i18n="lastSeen"></th><th data-i18n="latest"></th></tr></thead>
      <tbody id="buildings"></tbody></table>
      <div class="empty" id="buildings-note"></div>
    </div>
  </section>
  <section>
    <h2 data-i18n="energy"></h2>
    <div class="energy-bar"><select id="energy-building" aria-label="building"></select><span class="sub" id="energy-note"></span></div>
    <div id="energy-chart" class="energy"></div>
    <div class="legend"><i class="hist"></i><span data-i18n="actual"></span><i class="fc"></i><span data-i18n="forecastL"></span><i class="band"></i><span data-i18n="band"></span></div>
  </section>
</main>
<script src="/assets/mqtt.min.js"></script>
<script src="/assets/status.js"></script>
</body>
</html>
`;

export const STATUS_STYLE = `:root { --bg:#f5f6f8; --card:#fff; --ink:#1d2330; --mute:#6b7280; --line:#e5e7eb; --ok:#0f9d58; --bad:#d93025; --warn:#f29900; --accent:#1a73e8; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui, -apple-system, "Segoe UI", "Noto Sans KR", "Malgun Gothic", sans-serif; background:var(--bg); color:var(--ink); }
header { display:flex; align-items:center; gap:12px; padding:12px 20px; background:var(--card); border-bottom:1px solid var(--line); position:sticky; top:0; z-index:1; }
header h1 { font-size:16px; margin:0; font-weight:600; }
.pill { padding:2px 10px; border-radius:999px; font-size:12px; font-weight:600; color:#fff; background:var(--mute); }
.pill.ok { background:var(--ok); } .pill.bad { background:var(--bad); }
header .spacer { flex:1; }
header .meta { color:var(--mute); font-size:12px; }
button.lang { border:1px solid var(--line); background:var(--card); border-radius:6px; padding:3px 8px; cursor:pointer; font:inherit; font-size:12px; }
button.lang[aria-pressed=true] { background:var(--ink); color:#fff; }
main { padding:16px 20px; max-width:1400px; margin:0 auto; display:grid; gap:16px; }
.cards { display:grid; grid-template-columns:repeat(auto-fit, minmax(160px,1fr)); gap:12px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:12px 14px; }
.card .label { color:var(--mute); font-size:12px; }
.card .value { font-size:24px; font-weight:600; font-variant-numeric:tabular-nums; }
.card .sub { color:var(--mute); font-size:12px; font-variant-numeric:tabular-nums; }
.row { display:grid; grid-template-columns:2fr 1fr; gap:16px; }
@media (max-width: 900px) { .row { grid-template-columns:1fr; } }
section { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:12px 14px; min-width:0; }
section h2 { font-size:13px; margin:0 0 8px; color:var(--mute); font-weight:600; text-transform:uppercase; letter-spacing:.03em; }
canvas { width:100%; height:180px; display:block; }
table { width:100%; border-collapse:collapse; font-variant-numeric:tabular-nums; }
th, td { text-align:left; padding:5px 8px; border-bottom:1px solid var(--line); vertical-align:top; }
th { color:var(--mute); font-weight:600; font-size:12px; }
td.num { text-align:right; }
.svc { display:flex; justify-content:space-between; padding:6px 0; border-bottom:1px solid var(--line); }
.svc:last-child { border-bottom:0; }
.dot { display:inline-block; width:8px; height:8px; border-radius:50%; margin-right:6px; background:var(--mute); }
.dot.ok { background:var(--ok); } .dot.bad { background:var(--bad); }
.err { color:var(--bad); font-size:12px; word-break:break-word; }
.sev { font-size:11px; font-weight:700; padding:1px 6px; border-radius:4px; background:var(--warn); color:#fff; }
.sev.critical { background:var(--bad); }
.empty { color:var(--mute); padding:8px 0; }
.scroll { max-height:420px; overflow:auto; }
input[type=search] { width:100%; padding:6px 8px; border:1px solid var(--line); border-radius:6px; font:inherit; margin-bottom:8px; }
.chip { display:inline-block; margin:1px 6px 1px 0; white-space:nowrap; }
.chip b { font-weight:600; }
.legend { font-size:12px; color:var(--mute); }
.legend i { display:inline-block; width:10px; height:3px; margin:0 4px 2px 10px; vertical-align:middle; }
.legend i.acc { background:var(--accent); } .legend i.wr { background:var(--ok); }
.legend i.hist { background:var(--ink); } .legend i.fc { background:var(--accent); } .legend i.band { background:#c6dafc; height:8px; }
.energy-bar { display:flex; gap:12px; align-items:center; margin-bottom:6px; }
.energy-bar select { padding:4px 6px; border:1px solid var(--line); border-radius:6px; font:inherit; }
.energy svg { width:100%; height:220px; display:block; }
.energy .grid { stroke:var(--line); stroke-width:1; }
.energy .now { stroke:var(--mute); stroke-width:1; stroke-dasharray:2 3; }
.energy .hist { stroke:var(--ink); stroke-width:2; fill:none; }
.energy .fc { stroke:var(--accent); stroke-width:2; fill:none; stroke-dasharray:6 4; }
.energy .band { fill:var(--accent); fill-opacity:.18; stroke:none; }
.energy text { font-size:11px; fill:var(--mute); }
`;

export const STATUS_SCRIPT = `(function () {
  'use strict';
  var T = {
    ko: { loading: '불러오는 중', ready: '정상', degraded: '성능 저하', rate: '초당 수신 측정값', received: '수신 메시지', written: '저장된 포인트', clients: '연결된 센서/클라이언트', backlog: '대기 중 (백로그)', alerts: '활성 알림', chart: '초당 측정값 (최근 2분)', accepted: '수신', writtenS: '저장', services: '서비스 상태', activeAlerts: '활성 알림', severity: '심각도', where: '위치', sensor: '센서', value: '값 / 임계치', message: '메시지', since: '발생 시각', noAlerts: '활성 알림이 없습니다', moreAlerts: '외 {n}건 (최신 200건 표시)', buildings: '건물별 최신 측정값', building: '건물', readings: '측정값 수', lastSeen: '마지막 수신', latest: '최신 값', filter: '건물 검색 (예: building_001)', shown: '{n}개 중 {m}개 표시', noBuildings: '아직 수신된 측정값이 없습니다', rejectedN: '거부 {n}', p99: 'p99 {s}초', logInfo: '로그 {mb} MB · 최고 {age}초', live: '실시간 (MQTT)', polling: '주기 조회', notConfigured: '미설정', fileSink: '파일 싱크', sinkIs: '저장소: {s}', uptime: '가동 {t}', ago: '{s}초 전', upstream: '상위 MQTT 브로커', upstreamInfo: '연결 {up}/{n} · 대기 {w}', off: '꺼짐', energy: '에너지 사용량: 최근 48시간과 24시간 예측 (kWh/시간)', actual: '실측', forecastL: '예측', band: '80% 구간', noForecast: '예측 없음 (이력 부족 또는 아직 계산 전)', backtestNote: '백테스트 MAPE {m}% (전날 같은 시각 {b}%)', noEnergy: '표시할 건물이 없습니다', nodes: '클러스터 노드', node: '노드', addresses: 'MQTT / HTTP', nodeClients: '클라이언트', nodeRate: '초당 측정값', nodeBacklog: '백로그', nodeSeen: '마지막 확인', clusterCheck: '클러스터' },
    en: { loading: 'loading', ready: 'Ready', degraded: 'Degraded', rate: 'Readings per second', received: 'Messages received', written: 'Points written', clients: 'Connected sensors/clients', backlog: 'Backlog', alerts: 'Active alerts', chart: 'Readings per second (last 2 min)', accepted: 'accepted', writtenS: 'written', services: 'Services', activeAlerts: 'Active alerts', severity: 'Severity', where: 'Where', sensor: 'Sensor', value: 'Value / threshold', message: 'Message', since: 'Since', noAlerts: 'No active alerts', moreAlerts: 'and {n} more (newest 200 shown)', buildings: 'Latest readings per building', building: 'Building', readings: 'Readings', lastSeen: 'Last seen', latest: 'Latest values', filter: 'Filter buildings (e.g. building_001)', shown: 'showing {m} of {n}', noBuildings: 'No readings yet', rejectedN: '{n} rejected', p99: 'p99 {s} s', logInfo: 'log {mb} MB · oldest {age} s', live: 'live (MQTT)', polling: 'polling', notConfigured: 'not configured', fileSink: 'file sink', sinkIs: 'sink: {s}', uptime: 'up {t}', ago: '{s} s ago', upstream: 'Upstream MQTT', upstreamInfo: '{up}/{n} subscribed · {w} waiting', off: 'off', energy: 'Energy use: last 48 hours and 24-hour forecast (kWh per hour)', actual: 'actual', forecastL: 'forecast', band: '80% interval', noForecast: 'no forecast (too little history, or not computed yet)', backtestNote: 'backtest MAPE {m}% (same hour yesterday {b}%)', noEnergy: 'no building to show', nodes: 'Cluster nodes', node: 'Node', addresses: 'MQTT / HTTP', nodeClients: 'Clients', nodeRate: 'Readings/s', nodeBacklog: 'Backlog', nodeSeen: 'Last seen', clusterCheck: 'Cluster' }
  };
  var params = new URLSearchParams(location.search);
  var lang = params.get('lang') || localStorage.getItem('ei-lang') || ((navigator.language || 'ko').indexOf('ko') === 0 ? 'ko' : 'en');
  if (!T[lang]) lang = 'ko';
  function t(key, vars) {
    var s = (T[lang][key] || key);
    if (vars) for (var k in vars) s = s.split('{' + k + '}').join(String(vars[k]));
    return s;
  }
  function $(id) { return document.getElementById(id); }
  function esc(s) { return String(s).replace(/[&<>"']/g, function (c) { return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]; }); }
  function fmt(n) { return Number(n).toLocaleString(lang === 'ko' ? 'ko-KR' : 'en-US'); }
  function applyLang() {
    document.documentElement.lang = lang;
    document.querySelectorAll('[data-i18n]').forEach(function (el) { el.textContent = t(el.getAttribute('data-i18n')); });
    document.querySelectorAll('button.lang').forEach(function (b) { b.setAttribute('aria-pressed', String(b.getAttribute('data-lang') === lang)); });
    $('filter').placeholder = t('filter');
    renderAlerts(); renderBuildings(); renderEnergy(); if (lastStatus) renderStatus(lastStatus);
  }
  document.querySelectorAll('button.lang').forEach(function (b) {
    b.addEventListener('click', function () { lang = b.getAttribute('data-lang'); localStorage.setItem('ei-lang', lang); applyLang(); });
  });

  // ---- numbers: /api/status every second --------------------------------
  var history = [];
  var samples = [];
  var lastStatus = null;
  function renderStatus(s) {
    $('received').textContent = fmt(s.messages_received);
    $('rejected').textContent = t('rejectedN', { n: fmt(s.messages_rejected || 0) });
    $('written').textContent = fmt(s.points_written);
    $('latency').textContent = t('p99', { s: (s.ingest_latency_p99_s || 0).toFixed(2) });
    $('clients').textContent = fmt(s.connected_clients);
    $('sink').textContent = s.sink ? t('sinkIs', { s: s.sink }) : '';
    $('backlog').textContent = fmt(s.backlog_points);
    $('log').textContent = t('logInfo', { mb: (s.log_bytes / 1048576).toFixed(1), age: s.oldest_unsent_age_s });
    var up = s.uptime_s, h = Math.floor(up / 3600), m = Math.floor(up % 3600 / 60);
    $('uptime').textContent = t('uptime', { t: (h ? h + 'h ' : '') + m + 'm ' + (up % 60) + 's' });
    var r = s.ready;
    if (r) {
      $('ready').textContent = t(r.status === 'ready' ? 'ready' : 'degraded');
      $('ready').className = 'pill ' + (r.status === 'ready' ? 'ok' : 'bad');
      var html = '';
      ['mqtt', 'upstream', 'influxdb', 'redis', 'postgres'].forEach(function (name) {
        var c = r.checks[name];
        var label = { mqtt: 'MQTT', upstream: t('upstream'), influxdb: 'InfluxDB', redis: 'Redis', postgres: 'PostgreSQL' }[name];
        if (!c) {
          html += '<div class="svc"><span><span class="dot"></span>' + label + '</span><span class="sub">' + esc(name === 'influxdb' ? t('fileSink') : t('notConfigured')) + '</span></div>';
          return;
        }
        html += '<div class="svc" data-service="' + name + '"><span><span class="dot ' + (c.ok ? 'ok' : 'bad') + '"></span>' + label +
          (c.error ? '<div class="err">' + esc(c.error) + '</div>' : '') + '</span><span class="sub">' + (c.latency_ms !== undefined ? c.latency_ms + ' ms' : '') +
          // bridge mode: connections up of configured, messages waiting for the log fsync; the listener switched off
          (c.connections !== undefined ? esc(t('upstreamInfo', { up: c.subscribed, n: c.connections, w: c.messages_waiting })) : '') +
          (c.enabled === false ? esc(t('off')) : '') + '</span></div>';
      });
      // cluster mode only: Redis reachable and this node registered (contract section 14)
      var cc = r.checks.cluster;
      if (cc) html += '<div class="svc" data-service="cluster"><span><span class="dot ' + (cc.ok ? 'ok' : 'bad') + '"></span>' + esc(t('clusterCheck')) +
        (cc.error ? '<div class="err">' + esc(cc.error) + '</div>' : '') + '</span><span class="sub">' + (cc.latency_ms !== undefined ? cc.latency_ms + ' ms' : '') + '</span></div>';
      $('services').innerHTML = html;
    }
  }
  function poll() {
    fetch('/api/status', { cache: 'no-store' }).then(function (res) { return res.json(); }).then(function (s) {
      var now = performance.now();
      samples.push({ t: now, acc: s.readings_accepted, wr: s.points_written });
      if (samples.length > 4) samples.shift();
      var prev = samples.length > 1 ? samples[0] : null;
      if (prev) {
        // over the last ~3 s: writes come in batches (every flush interval), a 1 s difference would saw-tooth
        var dt = (now - prev.t) / 1000;
        var acc = Math.max(0, (s.readings_accepted - prev.acc) / dt), wr = Math.max(0, (s.points_written - prev.wr) / dt);
        history.push({ acc: acc, wr: wr });
        if (history.length > 120) history.shift();
        $('rate').textContent = fmt(Math.round(acc));
        $('rate').setAttribute('data-value', String(Math.round(acc)));
        $('rate-sub').textContent = t('writtenS') + ' ' + fmt(Math.round(wr)) + '/s';
        draw();
      }
      lastStatus = s;
      renderStatus(s);
    }).catch(function () { $('ready').className = 'pill bad'; }).then(function () { setTimeout(poll, 1000); });
  }

  // ---- the chart: plain canvas, two lines ---------------------------------
  function draw() {
    var c = $('chart'), ctx = c.getContext('2d');
    var dpr = window.devicePixelRatio || 1, w = c.clientWidth, h = c.clientHeight;
    if (c.width !== w * dpr) { c.width = w * dpr; c.height = h * dpr; }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    var max = 10;
    history.forEach(function (p) { max = Math.max(max, p.acc, p.wr); });
    max *= 1.15;
    ctx.strokeStyle = '#e5e7eb'; ctx.fillStyle = '#6b7280'; ctx.font = '11px system-ui'; ctx.lineWidth = 1;
    for (var i = 0; i <= 4; i++) {
      var y = 8 + (h - 24) * i / 4;
      ctx.beginPath(); ctx.moveTo(40, y); ctx.lineTo(w, y); ctx.stroke();
      ctx.fillText(fmt(Math.round(max * (1 - i / 4))), 0, y + 4);
    }
    function line(key, color) {
      ctx.strokeStyle = color; ctx.lineWidth = 2; ctx.beginPath();
      history.forEach(function (p, i) {
        var x = 40 + (w - 40) * (i + 120 - history.length) / 119, y = 8 + (h - 24) * (1 - p[key] / max);
        if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y);
      });
      ctx.stroke();
    }
    line('acc', '#1a73e8'); line('wr', '#0f9d58');
  }

  // ---- alerts: live over MQTT/WebSocket, retained = active ----------------
  // One event touches one row (insert, update or delete), never the whole
  // table: re-rendering 20,000 rows per message froze the page. At most
  // ALERT_ROWS rows are shown, newest first; the rest are counted below.
  var ALERT_ROWS = 200;
  var alerts = {};           // topic -> raised event
  var order = [];            // topics, newest first (raised_at, then topic)
  var rowOf = {};            // topic -> its <tr>, for the shown ones
  var polledTotal = null;    // polling: the server's count (only one page is fetched)
  function comesBefore(a, b) {
    var ea = alerts[a], eb = alerts[b];
    if (ea.raised_at !== eb.raised_at) return ea.raised_at > eb.raised_at;
    return a < b;
  }
  function position(topic) {
    var lo = 0, hi = order.length;
    while (lo < hi) { var mid = (lo + hi) >> 1; if (comesBefore(order[mid], topic)) lo = mid + 1; else hi = mid; }
    return lo;
  }
  function alertRow(topic) {
    var e = alerts[topic];
    var tr = document.createElement('tr');
    tr.setAttribute('data-rule', String(e.rule_id));
    tr.setAttribute('data-building', String(e.building_id));
    tr.setAttribute('data-room', String(e.room));
    tr.innerHTML = '<td><span class="sev ' + esc(e.severity) + '">' + esc(e.severity) + '</span></td><td>' + esc(e.building_id) + ' · ' + esc(e.floor) + ' · ' + esc(e.room) +
      '</td><td>' + esc(e.sensor_type) + '</td><td>' + esc(e.value) + ' / ' + esc(e.threshold) + ' ' + esc(e.unit) + '</td><td>' + esc(e.message) + '</td><td>' + esc(new Date(e.raised_at).toLocaleTimeString(lang)) + '</td>';
    rowOf[topic] = tr;
    return tr;
  }
  function alertMeta() {
    var total = polledTotal !== null ? polledTotal : order.length;
    var shown = Math.min(order.length, ALERT_ROWS);
    $('alerts-count').textContent = String(total);
    $('alerts-empty').style.display = total ? 'none' : '';
    $('alerts-more').textContent = total > shown ? t('moreAlerts', { n: fmt(total - shown) }) : '';
  }
  // the whole table at once: language switch, reconnect, a polled page
  function renderAlerts() {
    order = Object.keys(alerts);
    order.sort(function (a, b) { return comesBefore(a, b) ? -1 : comesBefore(b, a) ? 1 : 0; });
    rowOf = {};
    var body = $('alerts'), frag = document.createDocumentFragment();
    for (var i = 0; i < order.length && i < ALERT_ROWS; i++) frag.appendChild(alertRow(order[i]));
    body.textContent = '';
    body.appendChild(frag);
    alertMeta();
  }
  function removeAlert(topic) {
    if (!alerts[topic]) return;
    var i = position(topic);
    order.splice(i, 1);
    delete alerts[topic];
    var tr = rowOf[topic];
    if (tr) {
      tr.remove();
      delete rowOf[topic];
      // the first hidden one moves up into the last shown row
      if (order.length >= ALERT_ROWS) $('alerts').appendChild(alertRow(order[ALERT_ROWS - 1]));
    }
  }
  function addAlert(topic, e) {
    alerts[topic] = e;
    var i = position(topic);
    order.splice(i, 0, topic);
    if (i >= ALERT_ROWS) return;
    var body = $('alerts');
    body.insertBefore(alertRow(topic), body.children[i] || null);
    if (body.children.length > ALERT_ROWS) {
      var last = body.lastElementChild;
      delete rowOf[order[ALERT_ROWS]];
      last.remove();
    }
  }
  function onAlert(topic, body) {
    if (!body) { removeAlert(topic); alertMeta(); return; }
    try {
      var e = JSON.parse(body);
      removeAlert(topic);
      if (e.state === 'raised') addAlert(topic, e);
      alertMeta();
    } catch (err) { /* not an alert event */ }
  }
  var polling = null;
  function pollAlerts() {
    // one page: the first ALERT_ROWS, newest first, and the count of all
    fetch('/api/alerts/active?limit=' + ALERT_ROWS, { cache: 'no-store' }).then(function (r) { return r.json(); }).then(function (j) {
      alerts = {};
      polledTotal = j.count;
      j.alerts.forEach(function (e) { alerts['alerts/' + e.building_id + '/' + e.floor + '/' + e.room + '/' + e.sensor_type + '/' + e.rule_id] = e; });
      renderAlerts();
    }).catch(function () {});
  }
  function startPolling() {
    if (polling) return;
    $('alerts-source').textContent = t('polling');
    pollAlerts(); polling = setInterval(pollAlerts, 2000);
  }
  function connectMqtt() {
    if (!window.mqtt) return startPolling();
    var url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/mqtt';
    // timerVariant native: MQTT.js's default starts a Worker from a blob: URL, which the CSP (worker-src) refuses
    var client = window.mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 3000, timerVariant: 'native', clientId: 'status-page-' + Math.random().toString(16).slice(2, 10) });
    client.on('connect', function () {
      if (polling) { clearInterval(polling); polling = null; }
      alerts = {}; polledTotal = null; renderAlerts();
      $('alerts-source').textContent = t('live');
      $('live').textContent = '● MQTT';
      client.subscribe('alerts/#', { qos: 1 });
    });
    client.on('message', function (topic, payload) { onAlert(topic, payload.toString()); });
    client.on('error', function () { client.end(true); startPolling(); });
    client.on('close', function () { $('live').textContent = ''; });
  }

  // ---- buildings: /api/latest every 3 s, filtered and capped for 1,000+ ---
  var buildings = [];
  var MAX_ROWS = 200;
  function renderBuildings() {
    var q = $('filter').value.trim().toLowerCase();
    var list = q ? buildings.filter(function (b) { return b.building_id.toLowerCase().indexOf(q) >= 0; }) : buildings;
    var shown = list.slice(0, MAX_ROWS);
    var now = Date.now();
    $('buildings').innerHTML = shown.map(function (b) {
      var chips = Object.keys(b.sensors).sort().map(function (type) {
        var s = b.sensors[type];
        return '<span class="chip">' + esc(type) + ' <b>' + esc(Math.round(s.value * 100) / 100) + '</b> ' + esc(s.unit) + '</span>';
      }).join('');
      return '<tr data-building="' + esc(b.building_id) + '"><td>' + esc(b.building_id) + '</td><td class="num">' + fmt(b.readings) + '</td><td>' +
        t('ago', { s: Math.max(0, Math.round((now - Date.parse(b.last_at)) / 1000)) }) + '</td><td>' + chips + '</td></tr>';
    }).join('');
    $('buildings-note').textContent = buildings.length === 0 ? t('noBuildings') : (list.length > shown.length || q ? t('shown', { n: fmt(list.length), m: fmt(shown.length) }) : '');
  }
  function pollLatest() {
    fetch('/api/latest', { cache: 'no-store' }).then(function (r) { return r.json(); }).then(function (j) {
      buildings = j.buildings; renderBuildings();
      j.buildings.forEach(function (b) { addEnergyBuilding(b.building_id); });
    }).catch(function () {}).then(function () { setTimeout(pollLatest, 3000); });
  }
  $('filter').addEventListener('input', renderBuildings);

  // ---- energy: a building's last 48 h and its forecast (/api/energy/{id}), inline SVG ----
  // Built with createElementNS and presentation classes only: nothing inline for the CSP to refuse.
  var energyIds = {};
  var energy = null;
  var energySelected = '';
  var energyWanted = params.get('building') || localStorage.getItem('ei-energy-building') || '';
  var SVG = 'http://www.w3.org/2000/svg';
  function addEnergyBuilding(id) {
    if (energyIds[id]) return;
    energyIds[id] = true;
    var sel = $('energy-building');
    var ids = Object.keys(energyIds).sort();
    var opt = document.createElement('option');
    opt.value = id; opt.textContent = id;
    sel.insertBefore(opt, sel.options[ids.indexOf(id)] || null);
    if (!energySelected || id === energyWanted) { energySelected = id; sel.value = id; pollEnergy(); }
  }
  function svgEl(name, attrs, parent) {
    var el = document.createElementNS(SVG, name);
    for (var k in attrs) el.setAttribute(k, String(attrs[k]));
    if (parent) parent.appendChild(el);
    return el;
  }
  function renderEnergy() {
    var box = $('energy-chart');
    box.textContent = '';
    if (!energy) { $('energy-note').textContent = t('noEnergy'); return; }
    var hist = energy.history || [], fc = energy.forecast ? energy.forecast.points : [];
    $('energy-note').textContent = energy.forecast
      ? t('backtestNote', { m: energy.forecast.backtest.mape, b: energy.forecast.backtest.baseline_mape })
      : t('noForecast');
    var H = 3600000, now = Math.floor(Date.now() / H) * H;
    var x0 = now - 48 * H, x1 = now + 24 * H;
    var W = 900, Ht = 220, L = 44, B = 22, T = 8;
    var max = 1;
    hist.forEach(function (p) { max = Math.max(max, p.kwh); });
    fc.forEach(function (p) { max = Math.max(max, p.high, p.kwh); });
    max *= 1.1;
    var sx = function (ms) { return L + (W - L - 4) * (ms - x0) / (x1 - x0); };
    var sy = function (v) { return T + (Ht - T - B) * (1 - v / max); };
    var svg = svgEl('svg', { viewBox: '0 0 ' + W + ' ' + Ht, preserveAspectRatio: 'none', role: 'img', 'aria-label': t('energy') }, box);
    for (var i = 0; i <= 4; i++) {
      var v = max * i / 4;
      svgEl('line', { 'class': 'grid', x1: L, x2: W, y1: sy(v), y2: sy(v) }, svg);
      svgEl('text', { x: 0, y: sy(v) + 4 }, svg).textContent = fmt(Math.round(v * 10) / 10);
    }
    for (var h = x0; h < x1; h += 12 * H) {
      var d = new Date(h);
      svgEl('text', { x: sx(h) - 14, y: Ht - 6 }, svg).textContent = (d.getMonth() + 1) + '/' + d.getDate() + ' ' + String(d.getHours()).padStart(2, '0') + ':00';
    }
    svgEl('line', { 'class': 'now', x1: sx(now), x2: sx(now), y1: T, y2: Ht - B }, svg);
    if (fc.length) {
      var band = fc.map(function (p) { var m = Date.parse(p.hour) + H / 2; return sx(m) + ',' + sy(p.high); })
        .concat(fc.slice().reverse().map(function (p) { var m = Date.parse(p.hour) + H / 2; return sx(m) + ',' + sy(p.low); }));
      svgEl('polygon', { 'class': 'band', points: band.join(' ') }, svg);
      svgEl('path', { 'class': 'fc', d: fc.map(function (p, i) { return (i ? 'L' : 'M') + sx(Date.parse(p.hour) + H / 2) + ' ' + sy(p.kwh); }).join(' ') }, svg);
    }
    if (hist.length) {
      // a gap of missing hours breaks the line
      var dpath = '', prev = null;
      hist.forEach(function (p) {
        var m = Date.parse(p.hour);
        dpath += (prev !== null && m - prev === H ? 'L' : 'M') + sx(m + H / 2) + ' ' + sy(p.kwh) + ' ';
        prev = m;
      });
      svgEl('path', { 'class': 'hist', d: dpath.trim() }, svg);
    }
  }
  var energyTimer = null;
  function pollEnergy() {
    var id = $('energy-building').value;
    if (energyTimer) { clearTimeout(energyTimer); energyTimer = null; }
    if (!id) { energy = null; renderEnergy(); return; }
    fetch('/api/energy/' + encodeURIComponent(id), { cache: 'no-store' }).then(function (r) { return r.ok ? r.json() : null; }).then(function (j) {
      if (j && j.building_id === $('energy-building').value) { energy = j; renderEnergy(); }
    }).catch(function () {}).then(function () { energyTimer = setTimeout(pollEnergy, 60000); });
  }
  $('energy-building').addEventListener('change', function () {
    energyWanted = energySelected = $('energy-building').value;
    localStorage.setItem('ei-energy-building', energyWanted);
    pollEnergy();
  });
  fetch('/api/buildings', { cache: 'no-store' }).then(function (r) { return r.json(); }).then(function (j) {
    (j.buildings || []).forEach(function (b) { if (b.key) addEnergyBuilding(b.key); });
  }).catch(function () {});
  if (energyWanted) addEnergyBuilding(energyWanted);
  // ---- cluster nodes: /api/cluster every 5 s (an empty list in standalone mode hides the section) ----
  function pollNodes() {
    fetch('/api/cluster', { cache: 'no-store' }).then(function (r) { return r.json(); }).then(function (j) {
      var nodes = j.nodes || [];
      $('cluster').hidden = nodes.length === 0;
      var now = Date.now();
      $('nodes').innerHTML = nodes.map(function (n) {
        return '<tr data-node="' + esc(n.id) + '"><td>' + esc(n.id) + '</td><td>' + esc(n.mqtt) + ' / ' + esc(n.http) + '</td><td class="num">' +
          fmt(n.connected_clients) + '</td><td class="num">' + fmt(n.readings_per_s) + '</td><td class="num">' + fmt(n.backlog || 0) + '</td><td>' +
          t('ago', { s: Math.max(0, Math.round((now - Date.parse(n.last_seen)) / 1000)) }) + '</td></tr>';
      }).join('');
    }).catch(function () {}).then(function () { setTimeout(pollNodes, 5000); });
  }

  applyLang();
  poll();
  pollLatest();
  pollNodes();
  connectMqtt();
  window.addEventListener('resize', draw);
})();
`;
