// Types of switchboard.js (the rooms protocol v1 client). Checked by `tsc` in the test run.

export type Protocol = 'json' | 'msgpack';

/** A payload as the protocol delivers it: a JSON value, UTF-8 text, or bytes. */
export type Payload = unknown;

export interface ConnectOptions {
  /** A JWT sent in the first frame (`{"type":"auth"}`); a static token is not refreshed. */
  token?: string;
  /** Called for the first token, before it expires, and after the server refused one. */
  getToken?: () => string | Promise<string>;
  /** `json` (switchboard.v1.json, default) or `msgpack` (switchboard.v1.msgpack). */
  protocol?: Protocol;
  /** Reconnect backoff: a random delay in [0, min(max, min·2^attempt)) (full jitter). */
  minReconnectDelay?: number;
  maxReconnectDelay?: number;
  /** The first retry after close 1013 ("try again later") waits at least this long. */
  tryAgainLaterDelay?: number;
  /** Requests (join, publish, presence) fail with `timeout` after this many ms. */
  requestTimeout?: number;
  /** Refresh a token this many ms before it expires (at least 10 % of its life). */
  refreshBefore?: number;
  /** A WebSocket implementation (Node < 22: the `ws` package). */
  WebSocket?: unknown;
}

export interface Message {
  room: string;
  topic: string;
  payload: Payload;
  /** Opaque position in the room's history. */
  offset: string;
  /** Milliseconds since the Unix epoch when the broker received it. */
  ts: number;
  retain: boolean;
  /** The server skipped older messages of this topic for a slow client. */
  conflated: boolean;
}

export interface StateItem {
  topic: string;
  payload: Payload;
  ts: number;
}

export interface StateInfo {
  /** null on the first join; false after a reconnect whose gap was not recovered (redraw). */
  recovered: boolean | null;
  reason: string | null;
  /** The server held more retained topics than `[bridge] max_state_topics` returns. */
  truncated: boolean;
}

export interface MessageInfo {
  /** Part of `missed` (a resume or a rewind), not a live push. */
  replayed: boolean;
}

export interface DeviceEvent {
  type: 'device';
  client_id: string;
  online: boolean;
  reason?: string;
  since?: number;
  username?: string;
}

export interface MemberEvent {
  type: 'member';
  room: string;
  event: 'join' | 'leave';
  member: Member;
}

export interface Member {
  session: string;
  user?: string;
}

export interface JoinOptions {
  onMessage?: (message: Message, info: MessageInfo) => void;
  /** The room's current state: on the first join, and whenever the app must redraw. */
  onState?: (state: StateItem[], info: StateInfo) => void;
  onPresence?: (event: DeviceEvent | MemberEvent) => void;
  /** On the first join, also deliver the room's last N messages. */
  rewind?: number;
}

export interface Joined {
  recovered: boolean | null;
  epoch: string;
  offset: string;
}

export interface RoomHandle {
  readonly name: string;
  /** Resolves on the first `joined`; rejects when the server refuses the room. */
  readonly ready: Promise<Joined>;
  leave(): Promise<void>;
  presence(): Promise<Member[]>;
}

export interface PublishOptions {
  qos?: 0 | 1;
  retain?: boolean;
}

export interface Events {
  connected: { session: string; user: string | null; recovering: boolean };
  disconnected: { code: number; reason: string; wasConnected: boolean };
  recovering: { attempt: number; delay: number; code: number; reason: string };
  joined: { room: string; resumed: boolean; recovered: boolean | null; reason: string | null };
  token: { expires: number | null };
  error: { code: string; message?: string; room?: string; error?: unknown };
}

export interface Client {
  readonly state: 'connecting' | 'connected' | 'disconnected' | 'closed';
  readonly session: string | null;
  readonly user: string | null;
  on<E extends keyof Events>(event: E, listener: (detail: Events[E]) => void): () => void;
  isConnected(): boolean;
  join(room: string, options?: JoinOptions): RoomHandle;
  /** Strings are published as text, Uint8Array as bytes, anything else as JSON. */
  publish(topic: string, payload: unknown, options?: PublishOptions): Promise<void>;
  close(): void;
}

export class SwitchboardError extends Error {
  readonly code: string;
  constructor(code: string, message?: string);
}

export const PROTOCOLS: { json: 'switchboard.v1.json'; msgpack: 'switchboard.v1.msgpack' };
export const CLOSE: {
  NORMAL: 1000; GOING_AWAY: 1001; POLICY: 1008; TOO_BIG: 1009; TRY_AGAIN_LATER: 1013;
  HEARTBEAT_TIMEOUT: 4000; UNAUTHORIZED: 4001; TOKEN_EXPIRED: 4002;
};

export function connect(url: string, options?: ConnectOptions): Client;

declare const _default: { connect: typeof connect; PROTOCOLS: typeof PROTOCOLS; CLOSE: typeof CLOSE; SwitchboardError: typeof SwitchboardError };
export default _default;
