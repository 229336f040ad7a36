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
import { SignalingClient, ClientState, defaultSignalingUrl } from './signaling-client.js';
import { PeerLink } from './call.js';
import { createLog } from './log.js';
import { validRoom, cleanName, displayName } from './names.js';
import { CallUI, findElements } from './ui.js';
import { LocalMedia } from './media.js';
import { TileGrid } from './tiles.js';
import { ChatLog } from './chat.js';

const el = findElements(document);

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

/** @type {SignalingClient|null} */
let client = null;
/** @type {Map<string, PeerLink>} */
const links = new Map();
const ui = new CallUI({ el, state, links });
const tiles = new TileGrid(el);
const chat = new ChatLog({ el, state, links });
/** Recent log lines (also for debugging failed tests). */
const { lines: logLines, log } = createLog();
const media = new LocalMedia({ state, log });
media.addEventListener('toggle', () => {
  ui.renderMedia(media);
  announceMediaState();
});

// ------------------------------------------------------------------------------------------- helpers

function renderStatus(extra) {
  ui.renderStatus(client ? client.state : ClientState.IDLE, extra);
}

function stopLocalMedia() {
  media.stop();
  ui.clearSelfVideo();
}

/** Tells the others (through the server's `message` relay) whether our mic/camera are on. */
function announceMediaState(to) {
  if (client?.joined) client.sendMessage(media.payload(), to);
}

// ------------------------------------------------------------------------------------------- peers

function addLink(info, initiator) {
  const old = links.get(info.peer);
  if (old) removeLink(info.peer);
  const link = new PeerLink({
    id: info.peer,
    name: info.name ?? null,
    meta: info.meta ?? null,
    selfId: state.selfId,
    initiator,
    localStream: media.stream,
    iceServers: state.iceServers,
    signaling: client,
    log,
  });
  links.set(info.peer, link);
  link.addEventListener('chat', (ev) => chat.add({ from: link.id, name: displayName(link.id, link.name), text: ev.detail.text, direction: 'in', via: 'datachannel' }));
  tiles.add(link);
  ui.renderRoom();
  log('info', `peer ${info.peer} (${info.name ?? ''}) added, ${initiator ? 'we offer' : 'they offer'}, ${link.polite ? 'polite' : 'impolite'}`);
  return link;
}

function removeLink(id) {
  const link = links.get(id);
  if (link) {
    link.close();
    links.delete(id);
  }
  if (tiles.remove(id)) ui.renderRoom();
}

function removeAllLinks() {
  for (const id of [...links.keys()]) removeLink(id);
}

// ------------------------------------------------------------------------------------------- signaling

function makeClient() {
  const c = new SignalingClient(defaultSignalingUrl(location), {
    room: state.room,
    name: state.name || undefined,
    token: state.token,
    meta: { client: 'web' },
    reconnect: { minDelay: 500, maxDelay: 10000, factor: 2, jitter: 0.3 },
    pingInterval: 15000,
    pongTimeout: 8000,
  });
  c.addEventListener('state', () => renderStatus());
  c.addEventListener('reconnecting', (e) => {
    renderStatus(`attempt ${e.detail.attempt}, next in ${(e.detail.delay / 1000).toFixed(1)} s`);
    log('info', `signaling reconnect #${e.detail.attempt} in ${e.detail.delay} ms`);
  });
  c.addEventListener('close', (e) => log('info', `signaling closed ${e.detail.code} ${e.detail.reason}`));
  c.addEventListener('welcome', (e) => onWelcome(e.detail));
  c.addEventListener('peer-joined', (e) => onPeerJoined(e.detail));
  c.addEventListener('peer-left', (e) => {
    log('info', `peer-left ${e.detail.peer}`);
    removeLink(e.detail.peer);
  });
  c.addEventListener('offer', (e) => {
    const m = e.detail;
    if (!state.inCall) return;
    let link = links.get(m.from);
    if (!link) {
      const info = c.peers.get(m.from) ?? { peer: m.from };
      link = addLink(info, false);
    }
    link.handleSignal(m);
  });
  c.addEventListener('answer', (e) => links.get(e.detail.from)?.handleSignal(e.detail));
  c.addEventListener('candidate', (e) => links.get(e.detail.from)?.handleSignal(e.detail));
  c.addEventListener('message', (e) => onAppMessage(e.detail));
  c.addEventListener('error', (e) => onSignalingError(e.detail));
  return c;
}

function onWelcome(w) {
  state.welcomes += 1;
  state.selfId = w.peer;
  state.iceServers = Array.isArray(w.iceServers) ? w.iceServers : [];
  ui.setPeerId(w.peer);
  ui.hideNotice();
  log('info', `welcome: ${w.peer} in ${w.room} with ${w.peers.length} peer(s)${w.reconnected ? ', after reconnect' : ''}${w.resumed ? ' (resumed)' : ''}`);
  if (!state.inCall) {
    // Hung up while the join was in flight: leave again.
    client?.leave();
    return;
  }
  const listed = new Map(w.peers.map((p) => [p.peer, p]));
  if (w.resumed) {
    // Same session: the others never saw us leave. Keep live links to peers still here.
    for (const id of [...links.keys()]) if (!listed.has(id)) removeLink(id);
    for (const p of w.peers) {
      const link = links.get(p.peer);
      if (link && (link.state === 'failed' || link.state === 'closed')) removeLink(p.peer);
      // A peer that joined while we were away got us in its welcome, so it offers to us.
      if (!links.has(p.peer)) addLink(p, false);
    }
  } else {
    // New session (first join, or a reconnect with a new peer id): the others saw peer-left for our old id
    // and peer-joined for the new one. Every old link is stale; we are the newcomer, so we offer to each.
    removeAllLinks();
    for (const p of w.peers) addLink(p, true);
  }
  ui.renderRoom();
  announceMediaState();
}

function onPeerJoined(p) {
  log('info', `peer-joined ${p.peer} (${p.name ?? ''})`);
  if (!state.inCall) return;
  // The newcomer offers; we wait for it.
  addLink(p, false);
  announceMediaState(p.peer);
  ui.toast(`${displayName(p.peer, p.name)} joined`);
}

function onAppMessage(m) {
  const d = m.data;
  const link = links.get(m.from);
  if (d && typeof d === 'object' && d.type === 'media-state') {
    if (link) {
      link.remoteMedia = { audio: d.audio !== false, video: d.video !== false };
      tiles.render(link);
    }
  } else if (typeof d === 'string' || (d && typeof d === 'object' && d.type === 'chat' && typeof d.text === 'string')) {
    const info = client?.peers.get(m.from);
    chat.add({
      from: m.from,
      name: displayName(m.from, link?.name ?? info?.name),
      text: typeof d === 'string' ? d : d.text,
      direction: 'in',
      via: 'signaling',
    });
  } else {
    log('info', `message from ${m.from} ignored`, d);
  }
}

const ERROR_TEXT = {
  'room-full': 'This room is full. Try again later or pick another room.',
  unauthorized: 'You are not allowed to join this room (missing, invalid or expired token).',
  'rate-limited': 'Too many messages: the server dropped one. Slow down a little.',
  'already-joined': 'Already in a room.',
};

function onSignalingError(d) {
  log('warn', `signaling error ${d.code}: ${d.message}${d.requestType ? ` (for ${d.requestType})` : ''}`);
  if (d.requestType === 'join' && d.fatal) {
    state.inCall = false;
    removeAllLinks();
    ui.showNotice(d.code, ERROR_TEXT[d.code] ?? `Could not join: ${d.message ?? d.code}`, { label: 'Try again', run: () => rejoin() });
    ui.renderRoom();
  } else if (d.fatal) {
    ui.showNotice(
      d.code,
      d.code === 'reconnect-failed' ? 'Lost the connection to the server.' : `Disconnected by the server: ${d.message}`,
      { label: 'Reconnect', run: () => { ui.hideNotice(); client?.connect(); } },
    );
  } else if (d.code === 'unknown-peer' && d.requestType) {
    // A peer left while our message was in flight; its peer-left follows.
  } else if (d.code === 'rate-limited') {
    ui.toast(ERROR_TEXT['rate-limited']);
  }
}

// ------------------------------------------------------------------------------------------- flow

/** Joins `room` (checked by the caller) as `name`, with or without camera and microphone. */
function join(room, name, { media: withMedia }) {
  state.room = room;
  state.name = cleanName(name);
  state.wantMedia = withMedia;
  return startCall();
}

async function startCall() {
  ui.setView('call');
  state.inCall = true;
  chat.clearUnread();
  ui.hideNotice();
  ui.renderRoom();
  const url = new URL(location.href);
  url.searchParams.set('room', state.room);
  if (state.name) url.searchParams.set('name', state.name);
  else url.searchParams.delete('name');
  if (state.wantMedia) url.searchParams.delete('media');
  else url.searchParams.set('media', 'off');
  history.replaceState(null, '', url);

  state.media = 'pending';
  ui.showMediaPending();
  stopLocalMedia(); // a retry after a failed join must not leave the previous camera running
  await media.start();
  if (!state.inCall) { stopLocalMedia(); return; } // hung up while the permission prompt was open
  state.audioMuted = false;
  state.videoOff = false;
  ui.showSelf(media.stream);
  ui.renderMedia(media);

  if (!client) {
    client = makeClient();
    renderStatus();
    client.connect();
  } else {
    client.join({ room: state.room, name: state.name || undefined }).catch(() => { /* shown by the error event */ });
  }
}

function hangUp() {
  if (state.view !== 'call') return;
  state.inCall = false;
  client?.leave();
  removeAllLinks();
  stopLocalMedia();
  state.media = 'stopped';
  ui.renderMedia(media);
  ui.hideNotice();
  ui.showLeft();
}

function rejoin() {
  if (!validRoom(state.room)) return;
  ui.hideNotice();
  if (state.view === 'call' && state.inCall) return;
  startCall();
}

// ------------------------------------------------------------------------------------------- wiring

ui.wire({ join, hangUp, rejoin, media, chat });
window.addEventListener('online', () => client?.reconnectNow());
window.addEventListener('pagehide', () => {
  // Leave promptly so the others see peer-left now rather than after a timeout.
  client?.close(1000, 'page closed');
  for (const link of links.values()) link.close();
});
window.addEventListener('pageshow', (ev) => {
  if (ev.persisted) location.reload();
});

// ------------------------------------------------------------------------------------------- test hooks

function peerSnapshots() {
  const out = {};
  for (const [id, link] of links) out[id] = link.snapshot();
  return out;
}

function snapshot() {
  return {
    room: state.room,
    name: state.name,
    selfId: state.selfId,
    view: state.view,
    inCall: state.inCall,
    signaling: client ? client.state : ClientState.IDLE,
    welcomes: state.welcomes,
    media: state.media,
    mediaError: state.mediaError,
    audioMuted: state.audioMuted,
    videoOff: state.videoOff,
    localTracks: media.stream ? media.stream.getTracks().map((t) => ({ kind: t.kind, enabled: t.enabled, label: t.label })) : [],
    iceServers: state.iceServers,
    peers: peerSnapshots(),
    chat: chat.entries.map((m) => ({ ...m })),
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
  get chat() { return chat.entries.map((m) => ({ ...m })); },
  /** The SignalingClient (null before the first join). */
  get client() { return client; },
  get localStream() { return media.stream; },
  /** Recent log lines. */
  get log() { return logLines.slice(); },
  /** The last invite link `copyInvite()` tried to copy (null before). */
  get lastInvite() { return ui.lastInvite; },
  snapshot,
  waitFor,
  sendChat: (text, to) => chat.send(text, to),
  hangUp,
  rejoin,
  copyInvite: () => ui.copyInvite(),
  setAudioMuted: (muted) => media.setAudioMuted(muted),
  setVideoOff: (off) => media.setVideoOff(off),
  /** Joins `room` from the lobby (same as the form). */
  join(room, name = '', { media: withMedia = true } = {}) {
    if (!validRoom(room)) throw new TypeError('invalid room name');
    return join(room, name, { media: withMedia });
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
  renderStatus();
  ui.renderRoom();
  if (room && validRoom(room)) {
    join(room, name, { media: !(mediaParam === 'off' || mediaParam === '0' || mediaParam === 'false') });
  } else {
    ui.showLobby(room);
  }
}

boot();
