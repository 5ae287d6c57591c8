// The dashboard at `/`: topic tree, devices, room inspector and broker vitals, over
// switchboard.js like any other app. Data is only ever written with textContent.
import { connect } from '/client.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const ROW = 28;
// Offline devices stay listed this long; ones that were online only briefly (a
// mosquitto_pub) are counted, not listed.
const OFFLINE_KEPT_MS = Number(params.get('offline_ms')) || 120000;
const SHORT_LIVED_MS = 3000;
const STREAM_KEPT = 200;

// ---------- theme ----------
const THEMES = ['auto', 'light', 'dark'];
function applyTheme(theme) {
  if (theme === 'auto') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
  $('theme').textContent = `◐ ${theme}`;
}
let theme = params.get('theme') || localStorage.getItem('sb-theme') || 'auto';
applyTheme(theme);
$('theme').onclick = () => {
  theme = THEMES[(THEMES.indexOf(theme) + 1) % THEMES.length];
  localStorage.setItem('sb-theme', theme);
  applyTheme(theme);
};

// ---------- formatting ----------
function show(payload) {
  if (payload instanceof Uint8Array) {
    const hex = [...payload.subarray(0, 24)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
    return { text: `${hex}${payload.length > 24 ? ' …' : ''}`, binary: `${payload.length} B` };
  }
  if (typeof payload === 'string') return { text: payload };
  const text = JSON.stringify(payload);
  return { text: text.length > 300 ? `${text.slice(0, 300)}…` : text };
}
function pretty(payload) {
  if (payload instanceof Uint8Array) return show(payload).text;
  return typeof payload === 'string' ? payload : JSON.stringify(payload, null, 2);
}
function ago(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}
const clock = (ts) => new Date(ts).toLocaleTimeString([], { hour12: false });
function rateOf(times, now) {
  const recent = times.filter((t) => now - t < 10000).length;
  return recent === 0 ? '' : `${(recent / 10).toFixed(recent >= 10 ? 0 : 1)}/s`;
}

// ---------- the topic tree (a virtualised list of the flattened tree) ----------
const topics = new Map(); // topic → {payload, ts, retain, times, stale, flashUntil}
const root = { name: '', path: '', children: new Map(), expanded: true, depth: -1, size: 0 };
let rows = [];
let structureDirty = true;
let selected = null;
let query = '';

function nodeFor(topic) {
  let node = root;
  const levels = topic.split('/');
  for (let i = 0; i < levels.length; i++) {
    node.size += 1;
    let child = node.children.get(levels[i]);
    if (!child) {
      child = { name: levels[i], path: levels.slice(0, i + 1).join('/'), children: new Map(), expanded: i < 2, depth: i, size: 0 };
      node.children.set(levels[i], child);
    }
    node = child;
  }
  return node;
}

// Topics the page keeps at most: the browser's memory is bounded like the broker's.
const MAX_TOPICS = 100000;
let topicsDropped = 0;

function record(topic, payload, ts, retain, live) {
  let entry = topics.get(topic);
  if (!entry && topics.size >= MAX_TOPICS) {
    topicsDropped += 1;
    $('truncated').hidden = false;
    $('truncated').textContent = `Showing the first ${MAX_TOPICS.toLocaleString()} topics; ${topicsDropped.toLocaleString()} more seen. Open /?room=<a narrower filter>.`;
    return;
  }
  if (!entry) {
    entry = { payload, ts, retain, times: [], stale: false, flashUntil: 0 };
    topics.set(topic, entry);
    nodeFor(topic).topic = topic;
    structureDirty = true;
  }
  Object.assign(entry, { payload, ts, stale: false });
  if (retain !== undefined) entry.retain = retain;
  if (live) {
    entry.times.push(Date.now());
    if (entry.times.length > 30) entry.times.splice(0, entry.times.length - 30);
    entry.flashUntil = Date.now() + 800;
  }
  schedule();
}

function flatten() {
  rows = [];
  if (query) {
    for (const topic of [...topics.keys()].filter((t) => t.toLowerCase().includes(query)).sort()) {
      rows.push({ label: topic, depth: 0, topic, node: null });
    }
    return;
  }
  const stack = [...[...root.children.values()].sort(byName).reverse()];
  while (stack.length) {
    const node = stack.pop();
    rows.push({ label: node.name || '(empty)', depth: node.depth, topic: node.topic, node });
    if (node.children.size && node.expanded) {
      const children = [...node.children.values()].sort(byName);
      for (let i = children.length - 1; i >= 0; i--) stack.push(children[i]);
    }
  }
}
const byName = (a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

const tree = $('tree');
const space = $('tree-space');
const pool = [];
let frame = 0;
function schedule() {
  if (!frame) frame = requestAnimationFrame(paint);
}

function paint() {
  frame = 0;
  if (structureDirty) { flatten(); structureDirty = false; }
  $('topic-count').textContent = query ? `${rows.length.toLocaleString()} of ${topics.size.toLocaleString()}` : topics.size.toLocaleString();
  space.style.height = `${rows.length * ROW}px`;
  const first = Math.max(0, Math.floor(tree.scrollTop / ROW) - 8);
  const last = Math.min(rows.length, Math.ceil((tree.scrollTop + tree.clientHeight) / ROW) + 8);
  const now = Date.now();
  while (pool.length < last - first) {
    const el = document.createElement('div');
    el.className = 'trow';
    el.innerHTML = '<span class="name"><span class="twist"></span><span class="label"></span></span><span class="val"></span><span class="rate"></span><span class="age"></span>';
    el.onclick = () => choose(el.row);
    space.appendChild(el);
    pool.push(el);
  }
  pool.forEach((el, i) => {
    const row = rows[first + i];
    if (!row) { el.hidden = true; return; }
    el.hidden = false;
    el.row = row;
    el.style.top = `${(first + i) * ROW}px`;
    el.dataset.topic = row.topic || '';
    const entry = row.topic ? topics.get(row.topic) : null;
    const [twist, label] = el.firstChild.children;
    twist.textContent = row.node && row.node.children.size ? (row.node.expanded ? '▾' : '▸') : '';
    label.textContent = row.label;
    el.firstChild.style.paddingLeft = `${row.depth * 0.9}rem`;
    const val = el.children[1];
    val.textContent = '';
    if (entry) {
      const shown = show(entry.payload);
      if (entry.retain) val.appendChild(tag('retained', 'ret'));
      if (shown.binary) val.appendChild(tag(`bin ${shown.binary}`, 'bin'));
      val.append(shown.text);
      el.children[2].textContent = rateOf(entry.times, now);
      el.children[3].textContent = ago(now - entry.ts);
    } else {
      val.appendChild(tag(`${row.node.size} topic${row.node.size === 1 ? '' : 's'}`, ''));
      el.children[2].textContent = '';
      el.children[3].textContent = '';
    }
    el.classList.toggle('stale', !!entry && entry.stale);
    el.classList.toggle('flash', !!entry && entry.flashUntil > now);
    el.classList.toggle('sel', !!row.topic && row.topic === selected);
  });
  if (selected) showSelected();
}

function tag(text, kind) {
  const t = document.createElement('span');
  t.className = `tag ${kind}`;
  t.textContent = text;
  return t;
}

function choose(row) {
  if (!row) return;
  if (row.node && row.node.children.size && (!row.topic || row.topic === selected)) {
    row.node.expanded = !row.node.expanded;
    structureDirty = true;
  }
  if (row.topic) selected = row.topic;
  schedule();
}

function showSelected() {
  const entry = topics.get(selected);
  const box = $('selected');
  if (!entry) { box.hidden = true; return; }
  box.hidden = false;
  box.textContent = '';
  const title = document.createElement('div');
  title.append(tag(entry.retain ? 'retained' : 'live', entry.retain ? 'ret' : ''));
  const name = document.createElement('b');
  name.textContent = selected;
  title.append(name, ` · ${clock(entry.ts)} · ${rateOf(entry.times, Date.now()) || 'no recent messages'}`);
  const inspect = document.createElement('button');
  inspect.className = 'ghost';
  inspect.textContent = 'Inspect';
  inspect.style.marginLeft = '.5rem';
  inspect.onclick = () => { $('insp-room').value = selected; inspectRoom(selected); };
  title.append(inspect);
  const pre = document.createElement('pre');
  pre.textContent = pretty(entry.payload);
  box.append(title, pre);
}

tree.addEventListener('scroll', schedule, { passive: true });
window.addEventListener('resize', schedule);
$('search').addEventListener('input', (e) => { query = e.target.value.trim().toLowerCase(); structureDirty = true; tree.scrollTop = 0; schedule(); });
setInterval(schedule, 1000); // ages and rates

// ---------- devices ----------
const devices = new Map(); // client id → {online, since, reason, at, username}
let devicesRefused = null;
function renderDevices() {
  const now = Date.now();
  for (const [id, d] of devices) if (!d.online && now - d.at > OFFLINE_KEPT_MS) devices.delete(id);
  const all = [...devices.entries()];
  const brief = ([, d]) => !d.online && d.since && d.at - d.since < SHORT_LIVED_MS;
  const shortLived = all.filter(brief).length;
  $('device-note').textContent = devicesRefused || (shortLived ? `+ ${shortLived} short-lived clients in the last ${ago(OFFLINE_KEPT_MS)}` : `offline ones stay ${ago(OFFLINE_KEPT_MS)}`);
  const list = all.filter((e) => !brief(e)).sort(([a, x], [b, y]) => (x.online !== y.online ? (x.online ? -1 : 1) : x.online ? (a < b ? -1 : 1) : y.at - x.at));
  const online = list.filter(([, d]) => d.online).length;
  $('device-count').textContent = `${online} online`;
  const ul = $('devices');
  ul.textContent = '';
  for (const [id, d] of list.slice(0, 300)) {
    const li = document.createElement('li');
    li.className = d.online ? 'on' : 'off';
    li.dataset.client = id;
    const dot = document.createElement('span'); dot.className = 'dot';
    const name = document.createElement('span'); name.className = 'id'; name.textContent = d.username ? `${id} (${d.username})` : id;
    const when = document.createElement('span'); when.className = 'when';
    when.textContent = d.online ? `online since ${clock(d.since)} · ${ago(now - d.since)}` : `offline ${ago(now - d.at)} ago · ${d.reason || 'gone'}`;
    li.append(dot, name, when);
    ul.appendChild(li);
  }
  if (list.length > 300) ul.appendChild(Object.assign(document.createElement('li'), { textContent: `and ${list.length - 300} more` }));
}
setInterval(renderDevices, 1000);

// ---------- connection, banner, login ----------
let client = null;
let lostAt = null;
const joins = new Map(); // room → {handle, listeners}

function banner(kind, text) {
  const el = $('banner');
  el.hidden = !kind;
  el.dataset.kind = kind || '';
  el.textContent = text || '';
  clearTimeout(banner.timer);
  if (kind === 'back') banner.timer = setTimeout(() => { el.hidden = true; }, 8000);
}
function status(state, text) {
  const el = $('status');
  el.dataset.state = state;
  el.textContent = text || state;
}

function start(token) {
  if (client) client.close();
  joins.clear();
  const protocol = params.get('protocol') === 'msgpack' ? 'msgpack' : 'json';
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  client = connect(`${scheme}://${location.host}/ws`, { protocol, token: token || undefined });
  window.switchboard = client; // for the console
  client.on('connected', ({ user }) => {
    status('connected', user ? `connected as ${user}` : 'connected');
    $('login').hidden = true;
  });
  client.on('disconnected', ({ code, reason, wasConnected }) => {
    status('disconnected', `disconnected (${code})`);
    if (wasConnected) {
      lostAt = Date.now();
      for (const entry of topics.values()) entry.stale = true;
      schedule();
      const why = code === 1001 ? 'the broker is restarting' : code === 1013 ? 'the broker asked us to slow down' : reason || `code ${code}`;
      banner('lost', `Connection lost (${why}). Reconnecting — values shown may be stale.`);
    }
  });
  client.on('recovering', ({ attempt, delay }) => {
    status('connecting', `reconnecting (try ${attempt}, ${(delay / 1000).toFixed(1)} s)`);
  });
  client.on('joined', ({ room, resumed, recovered }) => {
    if (!resumed || room !== treeRoom) return;
    const gone = lostAt ? ` after ${((Date.now() - lostAt) / 1000).toFixed(1)} s` : '';
    banner('back', recovered ? `Reconnected${gone}: history recovered, nothing missed.` : `Reconnected${gone}: the broker's history did not cover the gap, so everything was redrawn from its current state.`);
    lostAt = null;
  });
  client.on('error', ({ code, message }) => {
    if (code === 'unauthorized' || code === 'token_expired') {
      status('closed', code === 'unauthorized' ? 'sign in needed' : 'token expired');
      $('login-why').textContent = message || (code === 'unauthorized' ? 'This broker needs a token for browsers.' : 'The token expired.');
      $('login').hidden = false;
    }
  });
  watch(treeRoom, { onState: treeState, onMessage: treeMessage });
  joins.get(treeRoom).handle.ready.catch((e) => {
    $('truncated').hidden = false;
    $('truncated').textContent = `Room ${treeRoom}: ${e.code} (${e.message}). Open /?room=<a filter your token grants>, e.g. /?room=sensors/%23.`;
  });
  watch('$devices', {
    onState: (state) => {
      for (const d of devices.values()) d.online = false;
      for (const s of state) devices.set(s.client_id, { online: true, since: s.since, username: s.username, at: Date.now() });
      for (const [id, d] of devices) if (!d.online && !d.reason) devices.delete(id);
      renderDevices();
    },
    onPresence: (e) => {
      if (e.type !== 'device') return;
      const now = Date.now();
      const was = devices.get(e.client_id);
      devices.set(e.client_id, e.online ? { online: true, since: e.since || now, username: e.username, at: now } : { online: false, reason: e.reason, at: now, since: was?.since, username: was?.username });
      renderDevices();
    },
  });
  devicesRefused = null;
  joins.get('$devices').handle.ready.catch((e) => { devicesRefused = `$devices: ${e.code} (the token needs the presence claim)`; renderDevices(); });
  inspectRoom($('insp-room').value.trim() || treeRoom);
}

// One join per room name, shared by the tree and the inspector.
function watch(room, listener) {
  let entry = joins.get(room);
  if (!entry) {
    entry = { listeners: new Set() };
    joins.set(room, entry);
    entry.handle = client.join(room, {
      onState: (s, info) => entry.listeners.forEach((l) => l.onState?.(s, info)),
      onMessage: (m, info) => entry.listeners.forEach((l) => l.onMessage?.(m, info)),
      onPresence: (e) => entry.listeners.forEach((l) => l.onPresence?.(e)),
    });
  }
  entry.listeners.add(listener);
  return () => {
    entry.listeners.delete(listener);
    if (entry.listeners.size === 0) { joins.delete(room); entry.handle.leave(); }
  };
}

const treeRoom = params.get('room') || '#';
function treeState(state, info) {
  if (info.recovered === false) {
    topics.clear(); root.children.clear(); root.size = 0; structureDirty = true; topicsDropped = 0;
  }
  for (const s of state) record(s.topic, s.payload, s.ts, true, false);
  $('truncated').hidden = !info.truncated;
  $('truncated').textContent = info.truncated ? `The broker returned its first ${state.length.toLocaleString()} retained topics ([bridge] max_state_topics); live messages add the rest.` : '';
  schedule();
}
function treeMessage(m) {
  // The flag of the value shown: a live, unretained update is not the retained value.
  record(m.topic, m.payload, m.ts, m.retain, true);
}

$('login').onsubmit = (e) => {
  e.preventDefault();
  const token = $('token').value.trim();
  sessionStorage.setItem('sb-token', token);
  start(token);
};

// ---------- inspector ----------
let unwatch = null;
let paused = false;
let held = [];
function inspectRoom(room) {
  if (unwatch) unwatch();
  $('stream').textContent = '';
  held = [];
  const label = $('insp-state');
  label.textContent = `joining ${room}…`;
  unwatch = watch(room, {
    onState: (state) => { label.textContent = `${room}: ${state.length} retained`; },
    onMessage: (m) => (paused ? hold(m) : streamIn(m)),
  });
  joins.get(room).handle.ready.then(() => { label.textContent = `in ${room}`; }, (e) => { label.textContent = `${room}: ${e.code}`; });
}
function hold(m) {
  held.push(m);
  if (held.length > 1000) held.shift();
  $('insp-pause').textContent = `Resume (${held.length})`;
}
function streamIn(m) {
  const li = document.createElement('li');
  const t = document.createElement('span'); t.className = 't'; t.textContent = clock(m.ts);
  const topic = document.createElement('span'); topic.className = 'topic'; topic.textContent = m.topic;
  const val = document.createElement('span'); val.className = 'val';
  const shown = show(m.payload);
  if (m.retain) val.appendChild(tag('retained', 'ret'));
  if (m.conflated) val.appendChild(tag('conflated', 'bin'));
  if (shown.binary) val.appendChild(tag(`bin ${shown.binary}`, 'bin'));
  val.append(shown.text);
  li.append(t, topic, val);
  const list = $('stream');
  list.prepend(li);
  while (list.children.length > STREAM_KEPT) list.lastChild.remove();
}
$('insp-join').onsubmit = (e) => { e.preventDefault(); inspectRoom($('insp-room').value.trim() || treeRoom); };
$('insp-pause').onclick = () => {
  paused = !paused;
  if (!paused) { held.forEach(streamIn); held = []; }
  $('insp-pause').textContent = paused ? 'Resume (0)' : 'Pause';
};
$('insp-pub').onsubmit = async (e) => {
  e.preventDefault();
  const topic = $('pub-topic').value.trim();
  const text = $('pub-payload').value;
  let payload = text;
  try { payload = JSON.parse(text); } catch { /* sent as text */ }
  const out = $('pub-result');
  try {
    await client.publish(topic, payload, { qos: 1, retain: $('pub-retain').checked });
    out.textContent = `published to ${topic} at ${clock(Date.now())}`;
  } catch (err) {
    out.textContent = err.code === 'forbidden' ? `forbidden: browsers may not publish to ${topic} (config [bridge] browser_publish, or the token's publish claim)` : `${err.code}: ${err.message}`;
  }
};

// ---------- vitals ----------
const samples = [];
async function pollVitals() {
  try {
    const token = sessionStorage.getItem('sb-token');
    const response = await fetch('/vitals', { headers: token ? { Authorization: `Bearer ${token}` } : {} });
    if (response.ok) {
      samples.push(await response.json());
      if (samples.length > 61) samples.shift();
      drawVitals();
    }
  } catch { /* the broker is away: the banner says so */ }
}
function p99Of(a, b) {
  const total = b.delivery_buckets.at(-1)?.[1] - (a.delivery_buckets.at(-1)?.[1] ?? 0);
  if (!(total > 0)) return null;
  for (let i = 0; i < b.delivery_buckets.length; i++) {
    const n = b.delivery_buckets[i][1] - (a.delivery_buckets[i]?.[1] ?? 0);
    if (n >= 0.99 * total) return b.delivery_buckets[i][0];
  }
  return null;
}
function drawVitals() {
  const last = samples.at(-1);
  const v = last.values;
  $('v-conn').textContent = (v.mqtt_connections + v.browser_connections).toLocaleString();
  $('v-conn-split').textContent = `${v.mqtt_connections} MQTT · ${v.browser_connections} browsers · ${v.retained_topics} retained`;
  const series = [];
  for (let i = 1; i < samples.length; i++) {
    const [a, b] = [samples[i - 1], samples[i]];
    const secs = Math.max(0.001, (b.ts - a.ts) / 1000);
    const per = (k) => Math.max(0, (b.values[k] - a.values[k]) / secs);
    series.push({ conn: b.values.mqtt_connections + b.values.browser_connections, in: per('messages_in'), out: per('browser_messages_out'), slow: per('conflated') + per('dropped'), p99: p99Of(a, b) });
  }
  const now = series.at(-1);
  if (now) {
    $('v-rate').textContent = `${Math.round(now.in)} in · ${Math.round(now.out)} out`;
    $('v-rate-split').textContent = 'MQTT publishes in · deliveries to browsers';
    $('v-slow').textContent = now.slow.toFixed(now.slow < 10 ? 1 : 0);
    $('v-p99').textContent = now.p99 === null ? 'idle' : now.p99 > 1e300 ? '> 1 s' : `≤ ${now.p99 * 1000} ms`;
  }
  line('c-conn', [series.map((s) => s.conn)]);
  line('c-rate', [series.map((s) => s.in), series.map((s) => s.out)]);
  line('c-slow', [series.map((s) => s.slow)]);
  line('c-p99', [series.map((s) => (s.p99 === null ? 0 : Math.min(s.p99, 1)))]);
}
function line(id, lines) {
  const svg = $(id);
  const max = Math.max(1e-9, ...lines.flat());
  svg.textContent = '';
  lines.forEach((values, n) => {
    const p = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
    const step = 120 / Math.max(1, Math.min(60, values.length) - 1);
    p.setAttribute('points', values.map((y, i) => `${i * step},${30 - (y / max) * 28}`).join(' '));
    if (n) p.setAttribute('class', 'second');
    svg.appendChild(p);
  });
}
pollVitals();
setInterval(pollVitals, 2000);

start(sessionStorage.getItem('sb-token'));
