// MessagePack for switchboard.js's binary subprotocol (switchboard.v1.msgpack):
// null, booleans, numbers, strings, Uint8Array (bin), arrays and plain objects.
// Extension types are not used by the protocol and are refused.

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true });

/** Encodes a value as MessagePack bytes. */
export function encode(value) {
  const out = new Writer();
  out.value(value, 0);
  return out.bytes();
}

/** Decodes one MessagePack value that fills `bytes` (Uint8Array or ArrayBuffer). */
export function decode(bytes) {
  const data = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const reader = new Reader(data);
  const value = reader.value(0);
  if (reader.at !== data.length) throw new Error('msgpack: trailing bytes');
  return value;
}

const MAX_DEPTH = 64;

class Writer {
  constructor() {
    this.buf = new Uint8Array(256);
    this.view = new DataView(this.buf.buffer);
    this.at = 0;
  }

  room(n) {
    if (this.at + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.at + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.at));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  byte(b) { this.room(1); this.buf[this.at++] = b; }
  u8(marker, n) { this.room(2); this.buf[this.at++] = marker; this.buf[this.at++] = n; }
  u16(marker, n) { this.room(3); this.buf[this.at++] = marker; this.view.setUint16(this.at, n); this.at += 2; }
  u32(marker, n) { this.room(5); this.buf[this.at++] = marker; this.view.setUint32(this.at, n); this.at += 4; }
  raw(bytes) { this.room(bytes.length); this.buf.set(bytes, this.at); this.at += bytes.length; }
  bytes() { return this.buf.slice(0, this.at); }

  value(v, depth) {
    if (depth > MAX_DEPTH) throw new Error('msgpack: nested too deeply');
    if (v === null || v === undefined) return this.byte(0xc0);
    if (v === false) return this.byte(0xc2);
    if (v === true) return this.byte(0xc3);
    if (typeof v === 'number') return this.number(v);
    if (typeof v === 'bigint') return this.bigint(v);
    if (typeof v === 'string') return this.string(v);
    if (v instanceof Uint8Array) return this.bin(v);
    if (v instanceof ArrayBuffer) return this.bin(new Uint8Array(v));
    if (Array.isArray(v)) {
      this.length(v.length, 0x90, 0xdc, 0xdd);
      for (const item of v) this.value(item, depth + 1);
      return undefined;
    }
    if (typeof v === 'object') {
      const keys = Object.keys(v).filter((k) => v[k] !== undefined);
      this.length(keys.length, 0x80, 0xde, 0xdf);
      for (const k of keys) { this.string(k); this.value(v[k], depth + 1); }
      return undefined;
    }
    throw new Error(`msgpack: cannot encode ${typeof v}`);
  }

  length(n, fix, marker16, marker32) {
    if (n < 16) this.byte(fix | n);
    else if (n < 0x10000) this.u16(marker16, n);
    else this.u32(marker32, n);
  }

  number(n) {
    if (!Number.isInteger(n) || !Number.isSafeInteger(n)) {
      this.room(9); this.buf[this.at++] = 0xcb; this.view.setFloat64(this.at, n); this.at += 8;
      return;
    }
    if (n >= 0) {
      if (n < 128) this.byte(n);
      else if (n < 0x100) this.u8(0xcc, n);
      else if (n < 0x10000) this.u16(0xcd, n);
      else if (n < 0x100000000) this.u32(0xce, n);
      else this.bigint(BigInt(n));
    } else if (n >= -32) this.byte(n & 0xff);
    else if (n >= -128) { this.room(2); this.buf[this.at++] = 0xd0; this.view.setInt8(this.at++, n); }
    else if (n >= -32768) { this.room(3); this.buf[this.at++] = 0xd1; this.view.setInt16(this.at, n); this.at += 2; }
    else if (n >= -2147483648) { this.room(5); this.buf[this.at++] = 0xd2; this.view.setInt32(this.at, n); this.at += 4; }
    else this.bigint(BigInt(n));
  }

  bigint(n) {
    this.room(9);
    if (n >= 0n) { this.buf[this.at++] = 0xcf; this.view.setBigUint64(this.at, n); }
    else { this.buf[this.at++] = 0xd3; this.view.setBigInt64(this.at, n); }
    this.at += 8;
  }

  string(s) {
    const bytes = utf8.encode(s);
    const n = bytes.length;
    if (n < 32) this.byte(0xa0 | n);
    else if (n < 0x100) this.u8(0xd9, n);
    else if (n < 0x10000) this.u16(0xda, n);
    else this.u32(0xdb, n);
    this.raw(bytes);
  }

  bin(bytes) {
    const n = bytes.length;
    if (n < 0x100) this.u8(0xc4, n);
    else if (n < 0x10000) this.u16(0xc5, n);
    else this.u32(0xc6, n);
    this.raw(bytes);
  }
}

class Reader {
  constructor(data) {
    this.data = data;
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    this.at = 0;
  }

  need(n) { if (this.at + n > this.data.length) throw new Error('msgpack: truncated'); }
  u8() { this.need(1); return this.data[this.at++]; }
  u16() { this.need(2); const v = this.view.getUint16(this.at); this.at += 2; return v; }
  u32() { this.need(4); const v = this.view.getUint32(this.at); this.at += 4; return v; }
  take(n) { this.need(n); const v = this.data.subarray(this.at, this.at + n); this.at += n; return v; }
  str(n) { return utf8Strict.decode(this.take(n)); }
  bin(n) { return this.take(n).slice(); }

  big(read) {
    this.need(8);
    const v = read.call(this.view, this.at);
    this.at += 8;
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }

  array(n, depth) {
    const out = [];
    for (let i = 0; i < n; i++) out.push(this.value(depth + 1));
    return out;
  }

  map(n, depth) {
    const out = {};
    for (let i = 0; i < n; i++) {
      const key = String(this.value(depth + 1));
      const value = this.value(depth + 1);
      // A key named __proto__ is data, not the object's prototype.
      if (key === '__proto__') Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
      else out[key] = value;
    }
    return out;
  }

  value(depth) {
    if (depth > MAX_DEPTH) throw new Error('msgpack: nested too deeply');
    const m = this.u8();
    if (m < 0x80) return m;
    if (m < 0x90) return this.map(m & 0x0f, depth);
    if (m < 0xa0) return this.array(m & 0x0f, depth);
    if (m < 0xc0) return this.str(m & 0x1f);
    if (m >= 0xe0) return m - 0x100;
    const v = this.view;
    switch (m) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return this.bin(this.u8());
      case 0xc5: return this.bin(this.u16());
      case 0xc6: return this.bin(this.u32());
      case 0xca: { this.need(4); const f = v.getFloat32(this.at); this.at += 4; return f; }
      case 0xcb: { this.need(8); const f = v.getFloat64(this.at); this.at += 8; return f; }
      case 0xcc: return this.u8();
      case 0xcd: return this.u16();
      case 0xce: return this.u32();
      case 0xcf: return this.big(DataView.prototype.getBigUint64);
      case 0xd0: { this.need(1); return v.getInt8(this.at++); }
      case 0xd1: { this.need(2); const n = v.getInt16(this.at); this.at += 2; return n; }
      case 0xd2: { this.need(4); const n = v.getInt32(this.at); this.at += 4; return n; }
      case 0xd3: return this.big(DataView.prototype.getBigInt64);
      case 0xd9: return this.str(this.u8());
      case 0xda: return this.str(this.u16());
      case 0xdb: return this.str(this.u32());
      case 0xdc: return this.array(this.u16(), depth);
      case 0xdd: return this.array(this.u32(), depth);
      case 0xde: return this.map(this.u16(), depth);
      case 0xdf: return this.map(this.u32(), depth);
      default: throw new Error(`msgpack: unsupported marker 0x${m.toString(16)}`);
    }
  }
}
