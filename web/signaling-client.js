// SPDX-License-Identifier: MIT
/**
 * @file A dependency-free browser client for the signaling protocol v1 (see docs/protocol.md).
 *
 * It owns one WebSocket, joins one room, keeps the connection alive with `ping`, reconnects with
 * exponential backoff and jitter, and turns server messages into typed DOM events. It knows nothing about
 * RTCPeerConnection: it only carries SDP and candidates.
 *
 * Session resume (docs/protocol.md, "Session resume"): the client joins `resumable`, tracks the `seq` of room
 * messages, and after a drop re-joins with its `resume` token and `last_seq`. A server that still holds the
 * session answers `welcome` with `resumed: true` and replays what was missed: same peer id, the others saw
 * nothing, so calls go on. Otherwise the answer is a fresh session (`resumed: false`, a new peer id). Given a
 * list of URLs (several server nodes), it moves to the next one at each reconnect.
 *
 * ```js
 * import { SignalingClient, defaultSignalingUrl } from './signaling-client.js';
 *
 * const client = new SignalingClient(defaultSignalingUrl(location), { room: 'demo', name: 'Ada' });
 * client.addEventListener('welcome', (e) => console.log('I am', e.detail.peer, 'with', e.detail.peers));
 * client.addEventListener('offer', (e) => handleOffer(e.detail.from, e.detail.sdp));
 * client.connect();
 * ```
 *
 * Reconnect policy (the documented choice):
 * - The client reconnects after any unexpected loss of the connection: network errors (1006), the server
 *   going away (1001), server errors (1011), a normal close the client did not ask for (1000), and a missed
 *   `pong` (the client closes the socket itself with 4000 and reconnects).
 * - It does NOT reconnect after `close()` (deliberate), nor after the close codes in
 *   `options.fatalCloseCodes`, by default the protocol's `FINAL_CLOSE_CODES` (./protocol.js, generated from the
 *   server's own list): 1002, 1003, 1007, 1008, 1009 and 4001. The first five mean that the
 *   server judged this client's own behaviour (protocol violation, binary data, invalid UTF-8, policy such as
 *   a slow consumer or abuse, a message too big); reconnecting would only repeat it, and hammering a server
 *   that has applied a policy close is exactly what the policy is there to stop. 4001 means that this
 *   session was resumed on another connection (another tab or client holding the token): this one is over.
 * - A failed `join` (for example `room-full`, `unauthorized`, `invalid-message`) ends the join: an `error`
 *   event with `fatal: true`, and the state becomes `left` with the socket still open, so `join()` can be called
 *   again (with another room or token). Exception: a failed re-join after a reconnect is retried with
 *   backoff when its code is `room-full` or `rate-limited`, since the room may still hold this client's
 *   previous connection until the server notices it is gone.
 * - After `leave()` the connection stays open and, if it drops, reconnects without re-joining.
 */

import { END_SESSION_CLOSE_CODE, FINAL_CLOSE_CODES, ROOM_PATTERN } from './protocol.js';

/**
 * Connection states, in the order a healthy client goes through them.
 * @readonly
 * @enum {string}
 */
export const ClientState = Object.freeze({
  /** Constructed, `connect()` not called yet. */
  IDLE: 'idle',
  /** The WebSocket is being opened. */
  CONNECTING: 'connecting',
  /** The WebSocket is open and `join` was sent; waiting for `welcome`. */
  JOINING: 'joining',
  /** In the room: `welcome` received. */
  JOINED: 'joined',
  /** The WebSocket is open but the client is not in a room (after `leave()`). */
  LEFT: 'left',
  /** The connection was lost; a reconnect is scheduled (see the `reconnecting` event). */
  RECONNECTING: 'reconnecting',
  /** Closed for good: after `close()`, a fatal close code, or a fatal join error. `connect()` may be called again. */
  CLOSED: 'closed',
});

export { ROOM_PATTERN };

/** Close codes after which the client does not reconnect by default. */
export const DEFAULT_FATAL_CLOSE_CODES = FINAL_CLOSE_CODES;

/** Join error codes that are retried with backoff when they answer a re-join after a reconnect. */
const RETRYABLE_REJOIN_ERRORS = new Set(['room-full', 'rate-limited']);

/** Close code this client uses when it drops a connection itself (pong or open timeout). */
const CLOSE_LIVENESS = 4000;

/**
 * An error answered by the server (`{type: "error", code, message, ref}`) or raised locally by the client.
 */
export class SignalingError extends Error {
  /**
   * @param {string} code Protocol error code (`room-full`, `unauthorized`, ...) or a local one:
   *   `timeout`, `closed`, `not-connected`.
   * @param {string} message Human-readable text.
   * @param {string|number|undefined} [ref] The `id` of the request this error answers, if any.
   */
  constructor(code, message, ref) {
    super(message);
    this.name = 'SignalingError';
    /** @type {string} */
    this.code = code;
    /** @type {string|number|undefined} */
    this.ref = ref;
  }
}

/**
 * Builds the default signaling URL for a page: `ws://host/ws` for `http:` pages, `wss://host/ws` for `https:`.
 * @param {{protocol: string, host: string}} location Usually `window.location`.
 * @param {string} [path='/ws'] The WebSocket path.
 * @returns {string}
 */
export function defaultSignalingUrl(location, path = '/ws') {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}${path}`;
}

/**
 * @typedef {object} ReconnectOptions
 * @property {number} [minDelay=500] First delay in ms.
 * @property {number} [maxDelay=15000] Upper bound in ms.
 * @property {number} [factor=2] Multiplier per failed attempt.
 * @property {number} [jitter=0.3] Relative random spread in [0, 1]: a delay `d` becomes a uniform value in
 *   `[d * (1 - jitter), d * (1 + jitter)]`, capped at `maxDelay`.
 * @property {number} [maxAttempts=Infinity] Give up (state `closed`) after this many consecutive failures.
 */

/**
 * @typedef {object} SignalingClientOptions
 * @property {string} [room] The room to join on connect (matching `ROOM_PATTERN`). Without it, call `join()`.
 * @property {string} [name] Display name (<= 64 chars) sent with `join`.
 * @property {object} [meta] Free JSON object (<= 1 KiB serialized) sent with `join`.
 * @property {string} [token] Auth token sent with `join` (when the server has auth on).
 * @property {boolean} [resume=true] Join `resumable`, and after a drop re-join with the `resume` token and
 *   `last_seq`, so that a server that still holds the session restores it (same peer id, missed messages
 *   replayed). `false`: every reconnect is a fresh join.
 * @property {ReconnectOptions|false} [reconnect] Backoff settings, or `false` to never reconnect.
 * @property {number} [pingInterval=20000] ms between keepalive pings; 0 disables them.
 * @property {number} [pongTimeout=10000] ms to wait for any message after a ping before reconnecting.
 * @property {number} [openTimeout=10000] ms to wait for the WebSocket to open before retrying.
 * @property {number} [joinTimeout=10000] ms to wait for `welcome` after `join` before retrying.
 * @property {number} [requestTimeout=10000] default timeout of `request()` in ms.
 * @property {number[]} [fatalCloseCodes] Close codes that stop reconnecting (default `FINAL_CLOSE_CODES`).
 * @property {typeof WebSocket} [WebSocket] WebSocket constructor to use (defaults to `globalThis.WebSocket`).
 */

/**
 * @typedef {object} PeerInfo
 * @property {string} peer Peer id.
 * @property {string|null} [name] Display name.
 * @property {object|null} [meta] Metadata object.
 */

/**
 * @typedef {object} WelcomeMessage
 * @property {'welcome'} type
 * @property {string} peer This client's peer id.
 * @property {string} room
 * @property {PeerInfo[]} peers The other peers already in the room.
 * @property {RTCIceServer[]} iceServers
 * @property {string} [resume] Resume token.
 * @property {string|number} [ref]
 * @property {boolean} reconnected Added by the client: true when this welcome follows a lost connection
 *   (a re-join after a reconnect), false for the first join and for `join()` after `leave()`.
 * @property {boolean} resumed The server restored the session after a reconnect (same peer id; the peers did
 *   not see this client leave, and the messages it missed follow this welcome).
 * @property {string|null} previousPeer Added by the client: the peer id of the previous session, if any.
 */

/**
 * Client for the signaling protocol v1.
 *
 * Events (all are `CustomEvent`s; the payload is in `event.detail`):
 * - `state`: `{state, previous}` on every state change (see {@link ClientState}).
 * - `open`: `{url}` when the WebSocket opens (before `join` is answered).
 * - `welcome`: the {@link WelcomeMessage}; after every successful join, including re-joins after a reconnect.
 * - `peer-joined`: `{peer, name, meta}`.  `peer-left`: `{peer}`.
 * - `offer`, `answer`: `{from, sdp}`.  `candidate`: `{from, candidate}` (`candidate` may be `null`).
 * - `message`: `{from, data}`.
 * - `pong`: `{}`.
 * - `ice-servers`: `{iceServers}`: fresh ICE servers (TURN credentials expire); apply them with
 *   `RTCPeerConnection.setConfiguration` so a long call can still restart ICE. {@link iceServers} follows.
 * - `error`: a server error `{code, message, ref?, requestType?}` (`requestType` is the type of the message
 *   whose `id` matches `ref`), or a local one with `local: true` (`transport`, `bad-json`, `pong-timeout`,
 *   `open-timeout`, `join-timeout`, `reconnect-failed`). `fatal: true` when the client stops because of it
 *   (for a join error: when the join is abandoned rather than retried).
 * - `close`: `{code, reason, wasClean, willReconnect}` whenever a WebSocket closes.
 * - `reconnecting`: `{attempt, delay}` when a reconnect is scheduled `delay` ms from now.
 * - `raw`: every parsed server message, before the typed event.
 *
 * @extends EventTarget
 */
export class SignalingClient extends EventTarget {
  /**
   * @param {string|string[]} url The WebSocket URL, for example `defaultSignalingUrl(location)`; or several
   *   (server nodes): the client starts with the first and moves to the next one at each reconnect.
   * @param {SignalingClientOptions} [options]
   */
  constructor(url, options = {}) {
    super();
    if (options.room !== undefined && !ROOM_PATTERN.test(options.room)) {
      throw new TypeError(`invalid room name ${JSON.stringify(options.room)}: use 1-64 of [A-Za-z0-9_-]`);
    }
    const urls = Array.isArray(url) ? [...url] : [url];
    if (urls.length === 0) throw new TypeError('no signaling URL given');
    /** The WebSocket URLs, in the order they are tried. @type {string[]} */
    this.urls = urls;
    /** The WebSocket URL in use (or next to be tried). @type {string} */
    this.url = urls[0];
    const rc = options.reconnect === false ? null : (options.reconnect ?? {});
    /** @private */
    this._opts = {
      name: options.name,
      meta: options.meta,
      token: options.token,
      resume: options.resume ?? true,
      reconnect: rc && {
        minDelay: rc.minDelay ?? 500,
        maxDelay: rc.maxDelay ?? 15000,
        factor: rc.factor ?? 2,
        jitter: Math.min(1, Math.max(0, rc.jitter ?? 0.3)),
        maxAttempts: rc.maxAttempts ?? Infinity,
      },
      pingInterval: options.pingInterval ?? 20000,
      pongTimeout: options.pongTimeout ?? 10000,
      openTimeout: options.openTimeout ?? 10000,
      joinTimeout: options.joinTimeout ?? 10000,
      requestTimeout: options.requestTimeout ?? 10000,
      fatalCloseCodes: new Set(options.fatalCloseCodes ?? DEFAULT_FATAL_CLOSE_CODES),
      WebSocket: options.WebSocket ?? globalThis.WebSocket,
    };
    /** @private @type {string|null} room we want to be in (null after leave()) */
    this._wantRoom = options.room ?? null;
    /** @private @type {string|null} the last room asked for, the default for join() */
    this._lastRoom = this._wantRoom;
    /** @private @type {WebSocket|null} */
    this._ws = null;
    /** @private */
    this._state = ClientState.IDLE;
    /** @private @type {string|null} */
    this._peerId = null;
    /** @private @type {string|null} peer id of the last session, to detect a resumed session */
    this._lastPeerId = null;
    /** @private true between losing a joined connection and the next welcome */
    this._lostSession = false;
    /** @private @type {string|null} */
    this._room = null;
    /** @private @type {RTCIceServer[]} */
    this._iceServers = [];
    /** @private @type {string|null} */
    this._resumeToken = null;
    /** @private the highest `seq` handled in this session (0: none) */
    this._lastSeq = 0;
    /** @private @type {Map<string, PeerInfo>} */
    this._peers = new Map();
    /** @private */
    this._attempt = 0;
    /** @private */
    this._welcomes = 0;
    /** @private */
    this._nextId = 1;
    /** @private @type {Map<string|number, {resolve: Function, reject: Function, timer: any}>} */
    this._pending = new Map();
    /** @private @type {Map<string|number, string>} id -> message type, for the last few sent messages */
    this._sentTypes = new Map();
    /** @private @type {string|number|null} */
    this._joinId = null;
    /** @private @type {WelcomeMessage|null} */
    this._lastWelcome = null;
    /** @private */
    this._timers = { reconnect: null, ping: null, pong: null, open: null, join: null };
  }

  // ---------------------------------------------------------------- read-only state

  /** Current {@link ClientState}. @type {string} */
  get state() {
    return this._state;
  }

  /** This client's peer id from the last `welcome`, or `null` when not in a room. @type {string|null} */
  get peerId() {
    return this._peerId;
  }

  /** The room this client is in, or `null`. @type {string|null} */
  get room() {
    return this._room;
  }

  /** The other peers in the room, kept up to date from `welcome`, `peer-joined` and `peer-left`. @type {ReadonlyMap<string, PeerInfo>} */
  get peers() {
    return this._peers;
  }

  /** ICE servers from the last `welcome` or `ice-servers` update (RTCIceServer objects). @type {RTCIceServer[]} */
  get iceServers() {
    return this._iceServers;
  }

  /** True when the WebSocket is open. @type {boolean} */
  get connected() {
    return !!this._ws && this._ws.readyState === 1;
  }

  /** True when in a room (state `joined`). @type {boolean} */
  get joined() {
    return this._state === ClientState.JOINED;
  }

  // ---------------------------------------------------------------- lifecycle

  /**
   * Opens the connection (and joins the configured room once open). Safe to call again after `close()`.
   * Does nothing if already connecting or connected (then it resolves with the current `welcome`, or `null`
   * when connected but not in a room); while a reconnect is scheduled, it reconnects now.
   * @returns {Promise<WelcomeMessage|null>} Resolves with the next `welcome` (or `null` if no room is set and
   *   the socket opened); rejects with a {@link SignalingError} if the client closes for good first. Callers
   *   that rely on events can ignore the promise: it never produces an unhandled rejection.
   */
  connect() {
    if (this._state === ClientState.JOINED) return Promise.resolve(this._lastWelcome);
    if (this._state === ClientState.LEFT) return Promise.resolve(null);
    const result = this._waitForJoin(true);
    if (this._state === ClientState.IDLE || this._state === ClientState.CLOSED) {
      this._attempt = 0;
      this._open();
    } else if (this._state === ClientState.RECONNECTING) {
      this.reconnectNow();
    }
    return result;
  }

  /**
   * Closes the connection for good (no reconnect). Sends `leave` first if in a room, so the others see
   * `peer-left` immediately. Pending requests reject with code `closed`.
   * @param {number} [code=END_SESSION_CLOSE_CODE] WebSocket close code (1000, which ends the session at once
   *   on the server, or 3000-4999).
   * @param {string} [reason='']
   */
  close(code = END_SESSION_CLOSE_CODE, reason = '') {
    const ws = this._ws;
    this._clearTimers();
    this._ws = null;
    if (ws) {
      this._detach(ws);
      if (ws.readyState === 1 && this._state === ClientState.JOINED) this._rawSend({ type: 'leave' }, ws);
      try { ws.close(code, reason); } catch { /* already closing */ }
      this._emit('close', { code, reason, wasClean: true, willReconnect: false });
    }
    this._resetRoomState();
    // A deliberate close ends the session: the next connect() is a fresh join, not a resume.
    this._resumeToken = null;
    this._lastSeq = 0;
    this._lastPeerId = null;
    this._lostSession = false;
    this._rejectAll('closed', 'the signaling client was closed');
    this._setState(ClientState.CLOSED);
  }

  /**
   * If a reconnect is scheduled, attempts it now instead of waiting for the backoff delay (useful on the
   * browser's `online` event). Does nothing otherwise.
   */
  reconnectNow() {
    if (this._state !== ClientState.RECONNECTING) return;
    clearTimeout(this._timers.reconnect);
    this._timers.reconnect = null;
    this._open();
  }

  /**
   * Joins a room on the current connection (use after `leave()`, or when no room was given to the
   * constructor). If the socket is not open, the room is remembered and joined once it is.
   * @param {{room?: string, name?: string, meta?: object, token?: string}} [params] Overrides for the
   *   constructor options; the room defaults to the last one.
   * @returns {Promise<WelcomeMessage>} Resolves with the `welcome`; rejects with a {@link SignalingError}
   *   (`room-full`, `unauthorized`, `already-joined`, `timeout`, `closed`, ...).
   */
  join(params = {}) {
    const room = params.room ?? this._wantRoom ?? this._lastRoom;
    if (!room || !ROOM_PATTERN.test(room)) {
      return Promise.reject(new TypeError(`invalid room name ${JSON.stringify(room)}`));
    }
    if (params.name !== undefined) this._opts.name = params.name;
    if (params.meta !== undefined) this._opts.meta = params.meta;
    if (params.token !== undefined) this._opts.token = params.token;
    this._wantRoom = room;
    this._lastRoom = room;
    if (this.connected && this._state !== ClientState.JOINED && this._state !== ClientState.JOINING) {
      return this._sendJoin();
    }
    if (this._state === ClientState.CLOSED || this._state === ClientState.IDLE) return this.connect();
    // connecting / reconnecting / joining: the join happens when the socket opens.
    return this._waitForJoin(false);
  }

  /**
   * Leaves the room (`leave`); the others get `peer-left`. The connection stays open (state `left`) and
   * is not re-joined on reconnect until `join()` is called.
   * @returns {boolean} Whether `leave` was sent.
   */
  leave() {
    const wasJoined = this._state === ClientState.JOINED;
    this._wantRoom = null;
    clearTimeout(this._timers.join);
    const sent = wasJoined ? this.send({ type: 'leave' }) !== null : false;
    this._resetRoomState();
    this._resumeToken = null;
    this._lastSeq = 0;
    this._lastPeerId = null;
    this._lostSession = false;
    if (this.connected) this._setState(ClientState.LEFT);
    return sent;
  }

  // ---------------------------------------------------------------- sending

  /**
   * Sends one protocol message as JSON. Adds a fresh `id` when the message has none, so that an `error`
   * about it can be matched (its `ref`, and `requestType` in the `error` event).
   * @param {{type: string, [key: string]: any}} message
   * @returns {string|number|null} The message `id`, or `null` if the socket is not open (nothing was sent).
   */
  send(message) {
    if (!this.connected) return null;
    const msg = message.id === undefined ? { ...message, id: this._newId() } : message;
    return this._rawSend(msg) ? msg.id : null;
  }

  /**
   * Sends a message and waits for the server message whose `ref` equals its `id`.
   * In protocol v1 only `join` gets a positive answer with a `ref` (its `welcome`); other messages only get
   * a `ref` on `error`, so use this for `join` or for server extensions that answer with a `ref`.
   * @param {{type: string, [key: string]: any}} message
   * @param {{timeout?: number}} [options] Timeout in ms (default `requestTimeout`).
   * @returns {Promise<object>} The answering message; rejects with a {@link SignalingError} on `error`,
   *   timeout (`timeout`), closed connection (`closed`) or when not connected (`not-connected`).
   */
  request(message, { timeout } = {}) {
    const id = message.id ?? this._newId();
    return new Promise((resolve, reject) => {
      if (!this.connected) {
        reject(new SignalingError('not-connected', 'the signaling connection is not open', id));
        return;
      }
      const ms = timeout ?? this._opts.requestTimeout;
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new SignalingError('timeout', `no answer to ${message.type} within ${ms} ms`, id));
      }, ms);
      this._pending.set(id, { resolve, reject, timer });
      if (!this._rawSend({ ...message, id })) {
        clearTimeout(timer);
        this._pending.delete(id);
        reject(new SignalingError('not-connected', 'the signaling connection is not open', id));
      }
    });
  }

  /**
   * Sends an SDP offer to a peer.
   * @param {string} to Peer id.
   * @param {string} sdp The offer SDP (`pc.localDescription.sdp`).
   * @returns {string|number|null} The message id, or `null` if not sent.
   */
  sendOffer(to, sdp) {
    return this.send({ type: 'offer', to, sdp });
  }

  /**
   * Sends an SDP answer to a peer.
   * @param {string} to Peer id.
   * @param {string} sdp The answer SDP.
   * @returns {string|number|null} The message id, or `null` if not sent.
   */
  sendAnswer(to, sdp) {
    return this.send({ type: 'answer', to, sdp });
  }

  /**
   * Sends a trickled ICE candidate, or `null` for end-of-candidates.
   * @param {string} to Peer id.
   * @param {RTCIceCandidate|RTCIceCandidateInit|null} candidate An `RTCIceCandidate` (converted with
   *   `toJSON()`), a plain init object, or `null`.
   * @returns {string|number|null} The message id, or `null` if not sent.
   */
  sendCandidate(to, candidate) {
    let c = null;
    if (candidate) {
      const init = typeof candidate.toJSON === 'function' ? candidate.toJSON() : candidate;
      c = {
        candidate: init.candidate ?? '',
        sdpMid: init.sdpMid ?? null,
        sdpMLineIndex: init.sdpMLineIndex ?? null,
      };
      if (init.usernameFragment !== undefined) c.usernameFragment = init.usernameFragment;
    }
    return this.send({ type: 'candidate', to, candidate: c });
  }

  /**
   * Sends application data through the server: to one peer, or to every other peer in the room.
   * @param {any} data Any JSON value.
   * @param {string} [to] Peer id; omit to broadcast to the room.
   * @returns {string|number|null} The message id, or `null` if not sent.
   */
  sendMessage(data, to) {
    const msg = { type: 'message', data };
    if (to !== undefined && to !== null) msg.to = to;
    return this.send(msg);
  }

  /**
   * Sends a `ping` now (the keepalive does this by itself every `pingInterval` ms).
   * @returns {boolean} Whether it was sent.
   */
  ping() {
    if (!this.connected) return false;
    this._rawSend({ type: 'ping' });
    this._armPongTimer();
    return true;
  }

  /**
   * Adds a listener and returns a function that removes it.
   * @param {string} type Event name (`welcome`, `offer`, ...).
   * @param {(detail: any, event: CustomEvent) => void} fn Called with `event.detail` and the event.
   * @returns {() => void} Unsubscribe.
   */
  on(type, fn) {
    const listener = (e) => fn(e.detail, e);
    this.addEventListener(type, listener);
    return () => this.removeEventListener(type, listener);
  }

  // ---------------------------------------------------------------- internals

  /**
   * @private Promise for the outcome of the next join: the `welcome`, or the join error that ends it, or
   * the client closing. With `resolveOnOpenWithoutRoom`, an open socket with no room to join resolves `null`.
   * It is pre-handled, so ignoring it never produces an unhandled rejection.
   */
  _waitForJoin(resolveOnOpenWithoutRoom) {
    const p = new Promise((resolve, reject) => {
      const offs = [];
      const done = () => offs.forEach((off) => off());
      offs.push(this.on('welcome', (d) => { done(); resolve(d); }));
      offs.push(this.on('error', (d) => {
        if (d.requestType === 'join' && d.fatal) {
          done();
          reject(new SignalingError(d.code, d.message ?? d.code, d.ref));
        }
      }));
      offs.push(this.on('state', ({ state }) => {
        if (state === ClientState.CLOSED) {
          done();
          reject(new SignalingError('closed', 'the signaling client closed before joining'));
        } else if (state === ClientState.LEFT && resolveOnOpenWithoutRoom) {
          done();
          resolve(null);
        }
      }));
    });
    p.catch(() => {});
    return p;
  }

  /** @private */
  _newId() {
    return `c${this._nextId++}`;
  }

  /** @private */
  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** @private */
  _setState(state) {
    if (state === this._state) return;
    const previous = this._state;
    this._state = state;
    this._emit('state', { state, previous });
  }

  /** @private */
  _rawSend(msg, ws = this._ws) {
    if (!ws || ws.readyState !== 1) return false;
    if (msg.id !== undefined) {
      this._sentTypes.set(msg.id, msg.type);
      if (this._sentTypes.size > 256) this._sentTypes.delete(this._sentTypes.keys().next().value);
    }
    try {
      ws.send(JSON.stringify(msg));
      return true;
    } catch (err) {
      this._emit('error', { code: 'transport', message: String(err), local: true });
      return false;
    }
  }

  /** @private */
  _open() {
    const WS = this._opts.WebSocket;
    if (!WS) throw new Error('no WebSocket implementation available');
    this._setState(ClientState.CONNECTING);
    let ws;
    try {
      ws = new WS(this.url);
    } catch (err) {
      // Bad URL and similar: not recoverable by retrying.
      this._emit('error', { code: 'transport', message: String(err), local: true, fatal: true });
      this._setState(ClientState.CLOSED);
      return;
    }
    this._ws = ws;
    ws.onopen = () => this._onOpen(ws);
    ws.onmessage = (ev) => this._onMessage(ws, ev);
    ws.onerror = () => { /* always followed by close; details are not exposed by browsers */ };
    ws.onclose = (ev) => this._onClose(ws, ev.code, ev.reason, ev.wasClean);
    clearTimeout(this._timers.open);
    this._timers.open = setTimeout(() => {
      if (this._ws === ws && ws.readyState !== 1) this._drop(ws, 'open-timeout', 'the WebSocket did not open in time');
    }, this._opts.openTimeout);
  }

  /** @private */
  _detach(ws) {
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
  }

  /** @private */
  _onOpen(ws) {
    if (this._ws !== ws) return;
    clearTimeout(this._timers.open);
    this._emit('open', { url: this.url });
    this._startPing();
    if (this._wantRoom) {
      this._sendJoin().catch(() => { /* reported through the error event */ });
    } else {
      this._setState(ClientState.LEFT);
    }
  }

  /** @private */
  _sendJoin() {
    const msg = { type: 'join', room: this._wantRoom };
    if (this._opts.name !== undefined && this._opts.name !== null && this._opts.name !== '') msg.name = this._opts.name;
    if (this._opts.meta !== undefined && this._opts.meta !== null) msg.meta = this._opts.meta;
    if (this._opts.token !== undefined && this._opts.token !== null) msg.token = this._opts.token;
    if (this._opts.resume) {
      msg.resumable = true;
      if (this._resumeToken) {
        msg.resume = this._resumeToken;
        msg.last_seq = this._lastSeq;
      }
    }
    const id = this._newId();
    this._joinId = id;
    this._setState(ClientState.JOINING);
    clearTimeout(this._timers.join);
    const ws = this._ws;
    this._timers.join = setTimeout(() => {
      if (this._ws === ws && this._state === ClientState.JOINING) {
        this._drop(ws, 'join-timeout', 'no welcome in time');
      }
    }, this._opts.joinTimeout);
    // The welcome/error handling itself lives in _onMessage so it also works without the promise.
    return this.request({ ...msg, id }, { timeout: this._opts.joinTimeout + 1000 });
  }

  /** @private */
  _onMessage(ws, ev) {
    if (this._ws !== ws) return;
    // Any message proves the connection is alive.
    clearTimeout(this._timers.pong);
    this._timers.pong = null;
    if (typeof ev.data !== 'string') return; // the protocol is text-only
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch {
      this._emit('error', { code: 'bad-json', message: 'the server sent invalid JSON', local: true });
      return;
    }
    if (!msg || typeof msg !== 'object' || typeof msg.type !== 'string') return;
    if (typeof msg.seq === 'number') {
      // A room message of a resumable session: a resume may replay one already handled; handle each once.
      if (msg.seq <= this._lastSeq) return;
      this._lastSeq = msg.seq;
    }
    this._emit('raw', msg);

    switch (msg.type) {
      case 'welcome':
        this._onWelcome(msg);
        break;
      case 'error':
        this._onError(ws, msg);
        break;
      case 'peer-joined':
        this._peers.set(msg.peer, { peer: msg.peer, name: msg.name ?? null, meta: msg.meta ?? null });
        this._emit('peer-joined', msg);
        break;
      case 'peer-left':
        this._peers.delete(msg.peer);
        this._emit('peer-left', msg);
        break;
      case 'ice-servers':
        if (Array.isArray(msg.iceServers)) this._iceServers = msg.iceServers;
        this._emit('ice-servers', msg);
        break;
      case 'offer':
      case 'answer':
      case 'candidate':
      case 'message':
      case 'pong':
        this._emit(msg.type, msg);
        break;
      default:
        // Unknown server message types are allowed by the protocol (compatible extensions).
        this._settle(msg);
        this._emit(msg.type, msg);
    }
  }

  /** @private */
  _onWelcome(msg) {
    clearTimeout(this._timers.join);
    if (this._wantRoom === null) {
      // leave() was called while the join was in flight: leave again at once, report no welcome.
      this._rawSend({ type: 'leave' });
      const p = msg.ref !== undefined ? this._pending.get(msg.ref) : undefined;
      if (p) {
        this._pending.delete(msg.ref);
        clearTimeout(p.timer);
        p.reject(new SignalingError('left', 'leave() was called before the join completed', msg.ref));
      }
      this._joinId = null;
      this._setState(ClientState.LEFT);
      return;
    }
    const previousPeer = this._lastPeerId;
    const reconnected = this._lostSession;
    this._lostSession = false;
    this._welcomes += 1;
    this._attempt = 0;
    this._peerId = msg.peer;
    this._lastPeerId = msg.peer;
    this._room = msg.room;
    this._iceServers = Array.isArray(msg.iceServers) ? msg.iceServers : [];
    this._resumeToken = typeof msg.resume === 'string' ? msg.resume : null;
    const resumed = msg.resumed === true;
    if (!resumed) this._lastSeq = 0; // a new session numbers its messages from 1
    this._peers = new Map();
    for (const p of Array.isArray(msg.peers) ? msg.peers : []) {
      this._peers.set(p.peer, { peer: p.peer, name: p.name ?? null, meta: p.meta ?? null });
    }
    this._setState(ClientState.JOINED);
    const detail = {
      ...msg,
      peers: Array.isArray(msg.peers) ? msg.peers : [],
      reconnected,
      resumed,
      previousPeer,
    };
    this._lastWelcome = detail;
    this._settle(detail);
    this._emit('welcome', detail);
  }

  /** @private */
  _onError(ws, msg) {
    const requestType = msg.ref !== undefined ? this._sentTypes.get(msg.ref) : undefined;
    const isJoinError = msg.ref !== undefined && msg.ref === this._joinId && this._state === ClientState.JOINING;
    const detail = { ...msg, requestType };
    if (!isJoinError) {
      this._settle(msg);
      this._emit('error', detail);
      return;
    }
    clearTimeout(this._timers.join);
    this._joinId = null;
    const retry = this._welcomes > 0 && RETRYABLE_REJOIN_ERRORS.has(msg.code) && this._opts.reconnect;
    if (!retry) this._wantRoom = null;
    this._settle(msg);
    this._emit('error', { ...detail, fatal: !retry });
    if (retry) {
      this._drop(ws, 'join-failed', `re-join failed: ${msg.code}`, false);
    } else {
      // The connection stays usable (the protocol keeps it open after errors): state `left`, join() again.
      this._setState(ClientState.LEFT);
    }
  }

  /** @private Resolves or rejects the pending request that `msg.ref` answers. */
  _settle(msg) {
    if (msg.ref === undefined) return;
    const p = this._pending.get(msg.ref);
    if (!p) return;
    this._pending.delete(msg.ref);
    clearTimeout(p.timer);
    if (msg.type === 'error') p.reject(new SignalingError(msg.code, msg.message ?? msg.code, msg.ref));
    else p.resolve(msg);
  }

  /** @private */
  _rejectAll(code, message) {
    for (const [id, p] of this._pending) {
      clearTimeout(p.timer);
      p.reject(new SignalingError(code, message, id));
    }
    this._pending.clear();
  }

  /** @private */
  _startPing() {
    clearInterval(this._timers.ping);
    if (this._opts.pingInterval > 0) {
      this._timers.ping = setInterval(() => this.ping(), this._opts.pingInterval);
    }
  }

  /** @private */
  _armPongTimer() {
    if (this._timers.pong || !(this._opts.pongTimeout > 0)) return;
    const ws = this._ws;
    this._timers.pong = setTimeout(() => {
      this._timers.pong = null;
      if (this._ws === ws) this._drop(ws, 'pong-timeout', `no pong within ${this._opts.pongTimeout} ms`);
    }, this._opts.pongTimeout);
  }

  /**
   * @private Drops a connection we consider dead or unusable and schedules a reconnect. The old socket is
   * detached first: a close handshake on a dead link may never finish, and we do not wait for it.
   */
  _drop(ws, code, message, report = true) {
    if (report) this._emit('error', { code, message, local: true });
    this._detach(ws);
    try { ws.close(CLOSE_LIVENESS, code); } catch { /* ignore */ }
    this._onClose(ws, CLOSE_LIVENESS, code, false);
  }

  /** @private */
  _onClose(ws, code, reason, wasClean) {
    if (this._ws !== ws) return;
    if (this._state === ClientState.JOINED) this._lostSession = true;
    this._ws = null;
    this._detach(ws);
    this._clearTimers();
    this._resetRoomState();
    const fatal = this._opts.fatalCloseCodes.has(code);
    const rc = this._opts.reconnect;
    const willReconnect = !fatal && !!rc && this._attempt < rc.maxAttempts;
    this._emit('close', { code, reason, wasClean, willReconnect });
    this._rejectAll('closed', `connection closed (${code})`);
    if (!willReconnect) {
      if (fatal) {
        this._emit('error', { code: 'transport', message: `closed by the server with ${code} ${reason}`.trim(), local: true, fatal: true });
      } else if (rc) {
        this._emit('error', { code: 'reconnect-failed', message: `gave up after ${this._attempt} attempts`, local: true, fatal: true });
      }
      this._setState(ClientState.CLOSED);
      return;
    }
    const delay = this._backoff(this._attempt);
    this._attempt += 1;
    // Several nodes: the next one (a resumable session may resume on any of them).
    this.url = this.urls[(this.urls.indexOf(this.url) + 1) % this.urls.length];
    this._setState(ClientState.RECONNECTING);
    this._emit('reconnecting', { attempt: this._attempt, delay });
    this._timers.reconnect = setTimeout(() => {
      this._timers.reconnect = null;
      if (this._state === ClientState.RECONNECTING) this._open();
    }, delay);
  }

  /** @private Exponential backoff with relative jitter, in ms. */
  _backoff(attempt) {
    const { minDelay, maxDelay, factor, jitter } = this._opts.reconnect;
    const base = Math.min(maxDelay, minDelay * Math.pow(factor, attempt));
    const spread = base * jitter * (2 * Math.random() - 1);
    return Math.round(Math.max(0, Math.min(maxDelay, base + spread)));
  }

  /** @private */
  _resetRoomState() {
    this._lastWelcome = null;
    this._peerId = null;
    this._room = null;
    this._peers = new Map();
    this._joinId = null;
  }

  /** @private */
  _clearTimers() {
    clearTimeout(this._timers.reconnect);
    clearInterval(this._timers.ping);
    clearTimeout(this._timers.pong);
    clearTimeout(this._timers.open);
    clearTimeout(this._timers.join);
    this._timers = { reconnect: null, ping: null, pong: null, open: null, join: null };
  }
}
