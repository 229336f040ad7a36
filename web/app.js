// SPDX-License-Identifier: MIT
/**
 * @file The call page: lobby, local media, one PeerLink per remote peer (mesh), chat, controls, and the
 * `window.app` hooks that end-to-end tests use.
 *
 * URL parameters: `room` (joins at once when valid), `name`, `media=off` (join receive-only without asking
 * for the camera), `token` (sent with join when the server has auth on).
 *
 * Stable hooks for tests (keep them when changing the UI):
 * - `#status[data-state]`: the SignalingClient state (idle, connecting, joining, joined, left, reconnecting,
 *   closed); its text says e.g. "Connected" / "Reconnecting…". `body[data-signaling]` mirrors it.
 * - `#media-error` (hidden unless getUserMedia failed; `data-reason` = denied | missing | busy | unsupported
 *   | error | partial). `body[data-media]` = `app.state.media`.
 * - `#notice[data-code]`: join / connection problems (room-full, unauthorized, ...), with `#notice-action`.
 * - `#tiles .tile[data-peer]`: one per remote peer, with `data-state` (RTCPeerConnection.connectionState),
 *   `data-ice`, `data-signaling`, `data-channel` (open | connecting | closed | none), `data-video`,
 *   `data-audio` (on | off), `data-polite`, `data-initiator`; `[data-role=name]`; `[data-role=stats]` with
 *   `data-rtt`, `data-in-kbps`, `data-out-kbps`, `data-local-type`, `data-remote-type`. `#self-tile` is the
 *   local preview (no `data-peer`). `#empty-state` is visible while alone in the room.
 * - `#chat-log li.chat-msg` with `data-direction` (in | out | system), `data-from`, `data-via`
 *   (datachannel | signaling | local) and `data-text`; `#chat-input`, `#chat-form`.
 * - Buttons: `#btn-mute`, `#btn-camera` (aria-pressed), `#btn-invite` (`data-copied` after a click),
 *   `#btn-stats`, `#btn-chat` (narrow screens), `#btn-hangup`, `#btn-rejoin`; lobby `#join-form`,
 *   `#join-room`, `#join-name`, `#join-media`, `#join-error`.
 * - `window.app`: see the object at the bottom of this file (`snapshot()`, `peers`, `waitFor()`,
 *   `sendChat()`, ...).
 */
import { createLog } from './log.js';
import { cleanName, validRoom } from './names.js';
import { CallUI, findElements } from './ui.js';
import { TileGrid } from './tiles.js';
import { LocalMedia } from './media.js';
import { ChatLog } from './chat.js';
import { Mesh } from './mesh.js';
import { CallSession } from './session.js';

/** Page state. Everything tests read goes through `window.app` (below). */
const state = {
  room: null,
  name: '',
  token: undefined,
  wantMedia: true,
  /** 'pending' | 'ok' | 'partial' | 'denied' | 'missing' | 'busy' | 'unsupported' | 'error' | 'off' | 'stopped' */
  media: 'pending',
  mediaError: null,
  /** 'lobby' | 'call' | 'left' */
  view: 'lobby',
  inCall: false,
  audioMuted: false,
  videoOff: false,
  selfId: null,
  iceServers: [],
  welcomes: 0,
  showStats: true,
  chatOpenMobile: false,
  unread: 0,
};

/** @type {Map<string, import('./call.js').PeerLink>} One PeerLink per remote peer, by peer id. */
const links = new Map();

const { lines: logLines, log } = createLog();
const el = findElements(document);
const ui = new CallUI({ el, state, links });
const tiles = new TileGrid(el);
const media = new LocalMedia({ state, log });
const chat = new ChatLog({ el, state, links });
const mesh = new Mesh({ state, links, log, media, tiles, chat, ui });
const session = new CallSession({ state, log, ui, media, mesh, chat });

media.addEventListener('toggle', () => {
  ui.renderMedia(media);
  mesh.announceMediaState();
});
ui.wire({
  join: (room, name, opts) => session.join(room, name, opts),
  hangUp: () => session.hangUp(),
  rejoin: () => session.rejoin(),
  media,
  chat,
});
session.watchPage();

// ------------------------------------------------------------------------------------------- test hooks

function peerSnapshots() {
  const out = {};
  for (const [id, link] of links) out[id] = link.snapshot();
  return out;
}

const chatCopy = () => chat.entries.map((m) => ({ ...m }));

function snapshot() {
  const stream = media.stream;
  return {
    room: state.room,
    name: state.name,
    selfId: state.selfId,
    view: state.view,
    inCall: state.inCall,
    signaling: session.signalingState,
    welcomes: state.welcomes,
    media: state.media,
    mediaError: state.mediaError,
    audioMuted: state.audioMuted,
    videoOff: state.videoOff,
    localTracks: stream ? stream.getTracks().map((t) => ({ kind: t.kind, enabled: t.enabled, label: t.label })) : [],
    iceServers: state.iceServers,
    peers: peerSnapshots(),
    chat: chatCopy(),
  };
}

/**
 * Resolves when `predicate(snapshot())` is truthy; rejects after `timeoutMs`.
 * @param {(s: ReturnType<typeof snapshot>) => boolean} predicate
 * @param {number} [timeoutMs=15000]
 */
function waitFor(predicate, timeoutMs = 15000) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const tick = () => {
      let ok = false;
      try { ok = predicate(snapshot()); } catch { ok = false; }
      if (ok) return resolve(snapshot());
      if (performance.now() - t0 > timeoutMs) return reject(new Error('app.waitFor timed out'));
      setTimeout(tick, 100);
    };
    tick();
  });
}

const app = {
  /** Live page state (read-only by convention). */
  state,
  /** JSON view of every remote peer: `{[peerId]: {connectionState, dataChannel, stats, ...}}`. */
  get peers() { return peerSnapshots(); },
  /** `{[peerId]: connectionState}`. */
  get peerStates() {
    const out = {};
    for (const [id, link] of links) out[id] = link.state;
    return out;
  },
  /** The PeerLink objects (RTCPeerConnection at `.pc`). */
  links,
  /** Chat history entries. */
  get chat() { return chatCopy(); },
  /** The SignalingClient (null before the first join). */
  get client() { return session.client; },
  get localStream() { return media.stream; },
  /** Recent log lines. */
  get log() { return logLines.slice(); },
  /** The last invite link `copyInvite()` tried to copy (null before). */
  get lastInvite() { return ui.lastInvite; },
  snapshot,
  waitFor,
  sendChat: (text, to) => chat.send(text, to),
  hangUp: () => session.hangUp(),
  rejoin: () => session.rejoin(),
  copyInvite: () => ui.copyInvite(),
  setAudioMuted: (muted) => media.setAudioMuted(muted),
  setVideoOff: (off) => media.setVideoOff(off),
  /** Joins `room` from the lobby (same as the form). */
  join(room, name = '', { media: withMedia = true } = {}) {
    if (!validRoom(room)) throw new TypeError('invalid room name');
    return session.join(room, name, { media: withMedia });
  },
};
window.app = app;

// ------------------------------------------------------------------------------------------- boot

function boot() {
  const params = new URLSearchParams(location.search);
  const room = params.get('room');
  const name = cleanName(params.get('name'));
  const token = params.get('token');
  const mediaParam = params.get('media');
  ui.prepare(name);
  if (token) state.token = token;
  session.renderStatus();
  ui.renderRoom();
  if (room && validRoom(room)) {
    session.join(room, name, { media: !(mediaParam === 'off' || mediaParam === '0' || mediaParam === 'false') });
  } else {
    ui.showLobby(room);
  }
}

boot();
