// switchboard.js: the browser (and Node) client of Switchboard's rooms protocol v1.
// Reconnects with exponential backoff and full jitter, re-joins every room from its
// last position, says whether the gap was recovered, keeps tokens fresh, and detects
// dead connections. Plain ES module: `import { connect } from '/client.js'`.
import { encode as packMsg, decode as unpackMsg } from './msgpack.js';

export const PROTOCOLS = { json: 'switchboard.v1.json', msgpack: 'switchboard.v1.msgpack' };

/** Close codes the server uses (docs/protocol.md). */
export const CLOSE = {
  NORMAL: 1000, GOING_AWAY: 1001, POLICY: 1008, TOO_BIG: 1009, TRY_AGAIN_LATER: 1013,
  HEARTBEAT_TIMEOUT: 4000, UNAUTHORIZED: 4001, TOKEN_EXPIRED: 4002,
};

const DEFAULTS = {
  protocol: 'json',
  minReconnectDelay: 500,
  maxReconnectDelay: 20000,
  // After 1013 ("try again later") the first retry waits at least this long.
  tryAgainLaterDelay: 5000,
  requestTimeout: 10000,
  // A token is refreshed this long before it expires (and at least 10 % of its life).
  refreshBefore: 15000,
};

/** Opens a client; it connects at once and keeps reconnecting until `close()`. */
export function connect(url, options = {}) {
  return new Client(url, options);
}

export class SwitchboardError extends Error {
  constructor(code, message) {
    super(message || code);
    this.name = 'SwitchboardError';
    this.code = code;
  }
}

const utf8Strict = new TextDecoder('utf-8', { fatal: true });

/** A payload from the wire, by the protocol's rules: JSON value, text, or bytes. */
function payloadOf(frame) {
  const p = frame.payload;
  if (p instanceof Uint8Array) {
    let text;
    try { text = utf8Strict.decode(p); } catch { return p; }
    if (text.trim() !== '') { try { return JSON.parse(text); } catch { /* text */ } }
    return text;
  }
  if (frame.encoding === 'base64') return Uint8Array.from(atob(p), (c) => c.charCodeAt(0));
  return p;
}

function base64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

/** Seconds-since-epoch `exp` of a JWT, or null. */
function tokenExpiry(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const claims = JSON.parse(atob(part + '='.repeat((4 - (part.length % 4)) % 4)));
    return typeof claims.exp === 'number' ? claims.exp * 1000 : null;
  } catch { return null; }
}

class Room {
  constructor(client, name, options) {
    this.client = client;
    this.name = name;
    this.options = options;
    this.position = null; // {epoch, offset} of the last message processed
    this.joined = false;
    this.left = false;
    this.ready = new Promise((resolve, reject) => { this.resolveReady = resolve; this.rejectReady = reject; });
    this.ready.catch(() => {});
  }

  /** Leaves the room; no more callbacks. */
  leave() {
    if (this.left) return Promise.resolve();
    this.left = true;
    this.client.rooms.delete(this.name);
    if (!this.client.isConnected()) return Promise.resolve();
    return this.client.request({ type: 'leave', room: this.name }).then(() => {}, () => {});
  }

  /** The room's members now. */
  presence() {
    return this.client.request({ type: 'presence', room: this.name }).then((r) => r.members);
  }

  joinFrame() {
    const frame = { type: 'join', room: this.name };
    if (this.position) frame.since = this.position;
    else if (this.options.rewind) frame.rewind = this.options.rewind;
    return frame;
  }

  onJoined(reply) {
    const resumed = this.position !== null;
    const recovered = resumed ? reply.recovered === true : null;
    const { onState, onMessage } = this.options;
    if (!resumed || !recovered) onState?.(reply.state.map((s) => ({ ...s, payload: payloadOf(s) })), { recovered, reason: reply.reason ?? null, truncated: reply.state_truncated === true });
    this.position = { epoch: reply.epoch, offset: reply.offset };
    for (const m of reply.missed || []) onMessage?.(this.client.messageOf(m), { replayed: true });
    this.joined = true;
    this.resolveReady({ recovered, epoch: reply.epoch, offset: reply.offset });
    this.client.emit('joined', { room: this.name, resumed, recovered, reason: reply.reason ?? null });
  }

  onMessage(frame) {
    if (this.position) this.position = { epoch: this.position.epoch, offset: frame.offset };
    this.options.onMessage?.(this.client.messageOf(frame), { replayed: false });
  }
}

class Client {
  constructor(url, options) {
    this.url = url;
    this.options = { ...DEFAULTS, ...options };
    this.subprotocol = PROTOCOLS[this.options.protocol];
    if (!this.subprotocol) throw new SwitchboardError('bad_request', `protocol must be json or msgpack, not ${this.options.protocol}`);
    this.WebSocket = this.options.WebSocket || globalThis.WebSocket;
    if (!this.WebSocket) throw new SwitchboardError('unsupported', 'no WebSocket: pass options.WebSocket (e.g. the ws package) in Node < 22');
    this.token = this.options.token || null;
    this.rooms = new Map();
    this.pending = new Map();
    this.listeners = new Map();
    this.nextId = 1;
    this.attempt = 0;
    this.state = 'connecting';
    this.session = null;
    this.user = null;
    this.closed = false;
    this.timers = new Set();
    this.open();
  }

  // ---- public API ----

  on(event, fn) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event).add(fn);
    return () => this.listeners.get(event)?.delete(fn);
  }

  isConnected() { return this.state === 'connected'; }

  /** Joins a room (a configured room or an MQTT topic filter); re-joined after reconnects. */
  join(name, options = {}) {
    if (this.rooms.has(name)) throw new SwitchboardError('already_joined', `already joined ${name}`);
    const room = new Room(this, name, options);
    this.rooms.set(name, room);
    if (this.isConnected()) this.sendJoin(room);
    return room;
  }

  /** Publishes to an MQTT topic. Strings go as text, Uint8Array as bytes, the rest as JSON. */
  publish(topic, payload, { qos = 0, retain = false } = {}) {
    const frame = { type: 'publish', topic, qos, retain };
    if (payload instanceof Uint8Array || payload instanceof ArrayBuffer) {
      const bytes = payload instanceof Uint8Array ? payload : new Uint8Array(payload);
      if (this.options.protocol === 'msgpack') frame.payload = bytes;
      else frame.payload_b64 = base64(bytes);
    } else if (typeof payload === 'string') {
      frame.payload = payload;
      frame.encoding = 'text';
    } else {
      frame.payload = payload;
    }
    return this.request(frame).then(() => undefined);
  }

  /** Stops reconnecting and closes the socket. */
  close() {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.setState('closed');
    if (this.ws) try { this.ws.close(CLOSE.NORMAL, 'bye'); } catch { /* closing */ }
    this.failPending('closed');
  }

  // ---- internals ----

  emit(event, detail) {
    for (const fn of this.listeners.get(event) || []) {
      try { fn(detail); } catch (e) { if (event !== 'error') this.emit('error', { code: 'callback', error: e }); }
    }
  }

  setState(state) { this.state = state; }

  later(ms, fn) {
    const t = setTimeout(() => { this.timers.delete(t); fn(); }, ms);
    this.timers.add(t);
    return t;
  }

  messageOf(frame) {
    return {
      room: frame.room, topic: frame.topic, payload: payloadOf(frame), offset: frame.offset,
      ts: frame.ts, retain: frame.retain, conflated: frame.conflated === true,
    };
  }

  async open() {
    if (this.closed) return;
    this.setState('connecting');
    if (this.options.getToken && (!this.token || this.expiresSoon())) {
      try { this.token = await this.options.getToken(); } catch (e) {
        this.emit('error', { code: 'get_token', error: e });
        return this.scheduleReconnect(0, 'getToken failed');
      }
      if (this.closed) return;
    }
    let ws;
    try { ws = new this.WebSocket(this.url, this.subprotocol); } catch (e) {
      this.emit('error', { code: 'connect', error: e });
      return this.scheduleReconnect(0, String(e));
    }
    this.ws = ws;
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => {
      if (this.token) this.send({ type: 'auth', token: this.token });
      this.lastHeard = Date.now();
    };
    ws.onmessage = (event) => { if (ws === this.ws) this.receive(event.data); };
    ws.onclose = (event) => { if (ws === this.ws) this.dropped(event.code, event.reason || ''); };
    ws.onerror = () => {};
  }

  expiresSoon() {
    const exp = tokenExpiry(this.token);
    return exp !== null && exp - Date.now() < 2000;
  }

  send(frame) {
    if (!this.ws || this.ws.readyState !== 1) return false;
    this.ws.send(this.options.protocol === 'msgpack' ? packMsg(frame) : JSON.stringify(frame));
    return true;
  }

  request(frame) {
    if (!this.isConnected() && frame.type !== 'auth') return Promise.reject(new SwitchboardError('disconnected', 'not connected'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = this.later(this.options.requestTimeout, () => {
        this.pending.delete(id);
        reject(new SwitchboardError('timeout', `no reply to ${frame.type} within ${this.options.requestTimeout} ms`));
      });
      this.pending.set(id, { resolve, reject, timer });
      if (!this.send({ ...frame, id })) {
        clearTimeout(timer); this.timers.delete(timer); this.pending.delete(id);
        reject(new SwitchboardError('disconnected', 'not connected'));
      }
    });
  }

  failPending(code) {
    for (const [, p] of this.pending) { clearTimeout(p.timer); this.timers.delete(p.timer); p.reject(new SwitchboardError(code, code)); }
    this.pending.clear();
  }

  receive(data) {
    let frame;
    try {
      frame = typeof data === 'string' ? JSON.parse(data) : unpackMsg(new Uint8Array(data));
    } catch (e) { return this.emit('error', { code: 'bad_frame', error: e }); }
    this.lastHeard = Date.now();
    if (frame.id !== undefined && this.pending.has(frame.id)) {
      const p = this.pending.get(frame.id);
      this.pending.delete(frame.id);
      clearTimeout(p.timer); this.timers.delete(p.timer);
      if (frame.type === 'error') p.reject(new SwitchboardError(frame.code, frame.message));
      else p.resolve(frame);
      return;
    }
    switch (frame.type) {
      case 'welcome': return this.welcomed(frame);
      case 'message': return this.rooms.get(frame.room)?.onMessage(frame);
      case 'member': return this.rooms.get(frame.room)?.options.onPresence?.(frame);
      case 'device':
        for (const room of this.rooms.values()) if (room.name === '$devices' || room.name.startsWith('$devices/')) room.options.onPresence?.(frame);
        return undefined;
      case 'left': {
        const room = this.rooms.get(frame.room);
        if (room) { this.rooms.delete(frame.room); room.left = true; this.emit('error', { code: frame.reason || 'left', room: frame.room }); }
        return undefined;
      }
      case 'token_expired': return this.refreshToken();
      case 'error': return this.emit('error', { code: frame.code, message: frame.message });
      default: return undefined;
    }
  }

  welcomed(frame) {
    const recovering = this.everConnected === true;
    this.everConnected = true;
    this.session = frame.session;
    this.user = frame.user ?? null;
    this.heartbeatMs = frame.heartbeat_ms || 25000;
    this.setState('connected');
    this.attempt = 0;
    this.armHeartbeat();
    this.armRefresh();
    for (const room of this.rooms.values()) this.sendJoin(room);
    this.emit('connected', { session: this.session, user: this.user, recovering });
  }

  sendJoin(room) {
    this.request(room.joinFrame()).then((reply) => { if (!room.left) room.onJoined(reply); }, (e) => {
      if (e.code === 'disconnected' || e.code === 'closed' || e.code === 'timeout') return; // re-joined on reconnect
      this.rooms.delete(room.name);
      room.left = true;
      room.rejectReady(e);
      this.emit('error', { code: e.code, message: e.message, room: room.name });
    });
  }

  // Nothing heard for a heartbeat interval: ask; no answer within another → dead.
  armHeartbeat() {
    const ws = this.ws;
    const check = () => {
      if (ws !== this.ws || this.state !== 'connected') return;
      const quiet = Date.now() - this.lastHeard;
      if (quiet >= 2 * this.heartbeatMs) return this.abandon(CLOSE.HEARTBEAT_TIMEOUT, 'no reply from the server');
      if (quiet >= this.heartbeatMs) this.send({ type: 'ping' });
      this.later(Math.max(250, this.heartbeatMs / 2), check);
      return undefined;
    };
    this.later(Math.max(250, this.heartbeatMs / 2), check);
  }

  armRefresh() {
    if (!this.options.getToken || !this.token) return;
    const exp = tokenExpiry(this.token);
    if (exp === null) return;
    const life = exp - Date.now();
    const ws = this.ws;
    const lead = Math.min(Math.max(this.options.refreshBefore, life * 0.1), life * 0.5);
    this.later(Math.max(0, life - lead), () => { if (ws === this.ws) this.refreshToken(); });
  }

  async refreshToken() {
    if (!this.options.getToken || this.refreshing) return;
    this.refreshing = true;
    try {
      const token = await this.options.getToken();
      this.token = token;
      await this.request({ type: 'auth', token });
      this.emit('token', { expires: tokenExpiry(token) });
      this.armRefresh();
    } catch (e) {
      this.emit('error', { code: e.code || 'get_token', error: e });
    } finally {
      this.refreshing = false;
    }
  }

  // A socket that stopped answering: drop it without waiting for TCP.
  abandon(code, reason) {
    const ws = this.ws;
    this.ws = null;
    try { ws?.close(CLOSE.NORMAL, reason); } catch { /* already closing */ }
    this.dropped(code, reason);
  }

  dropped(code, reason) {
    this.ws = null;
    const wasConnected = this.state === 'connected';
    this.setState(this.closed ? 'closed' : 'disconnected');
    for (const room of this.rooms.values()) room.joined = false;
    this.failPending('disconnected');
    this.emit('disconnected', { code, reason, wasConnected });
    if (this.closed) return;
    if (code === CLOSE.UNAUTHORIZED || code === CLOSE.TOKEN_EXPIRED) {
      if (!this.options.getToken) {
        this.closed = true;
        this.setState('closed');
        this.emit('error', { code: code === CLOSE.UNAUTHORIZED ? 'unauthorized' : 'token_expired', message: reason });
        return;
      }
      this.token = null; // fetch a fresh one
    }
    this.scheduleReconnect(code, reason);
  }

  /** Full jitter: a random delay in [0, min(cap, base·2^attempt)), with the server's hints. */
  scheduleReconnect(code, reason) {
    const { minReconnectDelay: base, maxReconnectDelay: cap } = this.options;
    let window = Math.min(cap, base * 2 ** this.attempt);
    let floor = 0;
    if (code === CLOSE.TRY_AGAIN_LATER) floor = Math.min(cap, this.options.tryAgainLaterDelay);
    // A server that announced a restart (1001): every client of it comes back, so
    // they spread over a wider window from the first retry on.
    if (code === CLOSE.GOING_AWAY) {
      this.attempt = Math.max(this.attempt, 2);
      window = Math.min(cap, base * 2 ** this.attempt);
    }
    if (code === CLOSE.UNAUTHORIZED) floor = Math.min(cap, base * 2);
    const delay = floor + Math.random() * window;
    this.attempt += 1;
    this.emit('recovering', { attempt: this.attempt, delay, code, reason });
    this.later(delay, () => this.open());
  }
}

export default { connect, PROTOCOLS, CLOSE, SwitchboardError };
